"""The local sink: each notice as one JSON line appended to a file.

For a box without robots or mail (``microbrain up``, an intranet trial): what would have
been sent is kept where an operator can read it (``tail -f``), and every delivery is
recorded on its alert like any channel's. A file that cannot be written (a missing
folder's parent, a full disk) is a :class:`DeliveryError` and retried.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import datetime

from cloud.response.channels.base import DeliveryError, Notice
from cloud.response.channels.config import LogConfig


def line(notice: Notice, now: datetime) -> str:
    return json.dumps(
        {
            "sent_at": now.isoformat(),
            "title": notice.title,
            "body": notice.body,
            "severity": notice.severity.name.lower(),
            "alert_ids": list(notice.alert_ids),
            "link": notice.link,
            "mentions": list(notice.mentions),
        },
        ensure_ascii=False,
    )


class LogChannel:
    def __init__(self, config: LogConfig) -> None:
        self.id = config.id
        self.budget_per_minute = config.budget_per_minute
        self.path = config.path
        self._lock = threading.Lock()  # whole lines, even from two responders' threads

    @classmethod
    def from_config(cls, config: LogConfig, _environ: Mapping[str, str]) -> LogChannel:
        return cls(config)

    def send(self, notice: Notice, *, now: datetime) -> None:
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(line(notice, now) + "\n")
        except OSError as err:
            raise DeliveryError(f"cannot append to {self.path}: {err.strerror or err}") from None

    def close(self) -> None:
        pass
