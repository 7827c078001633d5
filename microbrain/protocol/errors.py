"""The one exception the protocol raises for bad input."""


class ProtocolError(ValueError):
    """A topic or payload that does not follow the wire contract.

    ``str(err)`` is a one-line reason naming the field, fit for a log line, a
    dead-letter row and a metric label (``field``).
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field and not reason.startswith(field) else reason)
