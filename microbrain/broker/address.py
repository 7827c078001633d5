"""MQTT broker URLs, parsed in one place: ``mqtt://[user:pass@]host[:port]`` or ``mqtts://``.

The cloud's settings, the gateway's config and the CLI each apply their own policy on
top (the gateway forbids credentials in the URL; the cloud does not speak TLS yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True}  # scheme → TLS


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse a broker URL; ``ValueError`` says what is wrong with it.

    >>> parse_broker_url("mqtts://cloud.example").port
    8883
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"{url!r} is not a broker URL like mqtt://host:1883 or mqtts://host:8883")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    tls = SCHEMES[parts.scheme]
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
