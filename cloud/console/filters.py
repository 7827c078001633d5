"""The queue's filters, read from the query string once and used twice: as the
:class:`~cloud.alerts.queries.AlertFilter` the page's rows and counts are read with, and
as a test on each live change (so the stream adds exactly the rows a reload would show)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from cloud import auth
from cloud.alerts.lifecycle import ACTIVE, AlertStatus
from cloud.alerts.queries import AlertFilter
from cloud.console.templating import LOCAL_TZ
from cloud.db import models as m

LEVELS = ("building", "compound", "community", "district")
STATUSES = tuple(s.value for s in AlertStatus)
PAGE = 100


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _local_datetime(text: str) -> datetime | None:
    # <input type="datetime-local"> sends "2026-12-02T08:30" in the duty officer's time
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=LOCAL_TZ)).astimezone(UTC)


@dataclass(frozen=True)
class QueueFilter:
    """What the duty officer asked to see; unknown values are dropped, not errors (a
    hand-edited URL shows the unfiltered queue rather than a stack trace)."""

    statuses: tuple[str, ...] = tuple(s.value for s in ACTIVE)
    severities: tuple[int, ...] = ()
    levels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    community: str | None = None
    compound: str | None = None
    building: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    unreviewed: bool = False
    offset: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_request(cls, request: Request) -> QueueFilter:
        q = request.query_params
        statuses = tuple(s for s in q.getlist("status") if s in STATUSES)
        if "all" in q.getlist("status"):
            statuses = STATUSES
        severities = tuple(int(s) for s in q.getlist("severity") if s in ("1", "2", "3"))
        levels = tuple(v for v in q.getlist("level") if v in LEVELS)
        kinds = tuple(k for k in q.getlist("kind") if k and len(k) <= 64)[:20]
        place = {k: (q.get(k) or None) for k in ("community", "compound", "building")}
        since = _local_datetime(q.get("since", "")) if q.get("since") else None
        until = _local_datetime(q.get("until", "")) if q.get("until") else None
        offset = int(q["offset"]) if q.get("offset", "").isdigit() else 0
        return cls(
            statuses=statuses or cls.statuses,
            severities=severities,
            levels=levels,
            kinds=kinds,
            since=since,
            until=until,
            unreviewed=q.get("unreviewed") == "1",
            offset=min(offset, 100_000),
            raw={k: q.getlist(k) for k in q if k != "offset"},
            **{k: v for k, v in place.items() if v is None or len(v) <= 64},
        )

    def query(self, *, limit: int = PAGE, **override: Any) -> AlertFilter:
        """The SQL form: the filter :func:`cloud.alerts.queries.list_alerts` and
        :func:`~cloud.alerts.queries.counts` take (the user's scope they add)."""
        values: dict[str, Any] = {
            "statuses": self.statuses,
            "severities": self.severities,
            "levels": self.levels,
            "kinds": self.kinds,
            "community": self.community,
            "compound": self.compound,
            "building": self.building,
            "since": self.since,
            "until": self.until,
            "reviewed": False if self.unreviewed else None,
            "limit": limit,
            "offset": self.offset,
        }
        values.update(override)
        return AlertFilter(**values)

    def matches(self, user: m.User, alert: m.Alert) -> bool:
        """The in-memory form of :meth:`query` (``alert`` with its verdict loaded)."""
        return (
            (not self.unreviewed or alert.verdict_row is None)
            and auth.in_scope(user, alert.community, alert.compound, alert.building)
            and alert.status in self.statuses
            and (not self.severities or alert.severity in self.severities)
            and (not self.levels or alert.level in self.levels)
            and (not self.kinds or alert.kind in self.kinds)
            and all(
                want is None or have == want
                for want, have in (
                    (self.community, alert.community),
                    (self.compound, alert.compound),
                    (self.building, alert.building),
                )
            )
            and (self.since is None or _utc(alert.opened_at) >= self.since)
            and (self.until is None or _utc(alert.opened_at) < self.until)
        )

    def query_string(self, **override: Any) -> str:
        """The filter as a query string (for the stream's URL and "more" links)."""
        values = {k: v for k, v in self.raw.items() if v}
        values.update({k: v for k, v in override.items() if v is not None})
        return urlencode(values, doseq=True)
