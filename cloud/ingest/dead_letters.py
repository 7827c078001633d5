"""Keep what the ingest refused, within a cap per gateway, so junk cannot fill the disk.

A dead letter keeps a sample of the payload (its first :data:`SAMPLE_BYTES`) and the
sha256 of the whole. The same bad item again (same gateway, topic and hash) counts in its
row instead of adding one. New rows per gateway are capped in number and bytes over a
rolling window (``MB_CLOUD_DEAD_LETTER_*``); what goes over is counted, not kept: by
reason in ``mb_ingest_dead_letters_dropped_total``, per gateway in
``gateways.dead_letters_dropped``, and a ``gateway_junk`` alert for the gateway that keeps
sending it (folded like any alert: one live alert per gateway, counting).

Refusals from unregistered gateways share one cap (gateway NULL): the name on their
topic is not anyone's to count against.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, insert, or_, select
from sqlalchemy.orm import Session

from cloud.alerts import fold_event
from cloud.db import models as m
from cloud.ingest import metrics
from cloud.settings import Settings
from microbrain.protocol import Event, Severity

log = logging.getLogger(__name__)
SAMPLE_BYTES = 1024  # of each refused payload; the sha256 covers all of it
JUNK_ALERT_KIND = "gateway_junk"


@dataclass(frozen=True, slots=True)
class Caps:
    """What one gateway's dead letters may keep within ``window``."""

    window: timedelta
    max_rows: int
    max_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Caps:
        return cls(
            window=timedelta(seconds=settings.dead_letter_window_s),
            max_rows=settings.dead_letter_max_rows,
            max_bytes=settings.dead_letter_max_bytes,
        )


@dataclass(slots=True)
class _Configured:
    """This process's caps (a holder, so that configuring needs no ``global``)."""

    caps: Caps | None = None


_configured = _Configured()


def configure(caps: Caps | None) -> None:
    """Set the caps of this process for callers that pass none (tests, tools; each ingest
    worker passes its own, from its settings); ``None`` goes back to the environment's."""
    _configured.caps = caps


def current_caps() -> Caps:
    """The configured caps, else the environment's (``MB_CLOUD_DEAD_LETTER_*``)."""
    if _configured.caps is None:
        _configured.caps = Caps.from_settings(Settings())
    return _configured.caps


@dataclass(frozen=True, slots=True)
class Letter:
    """One refused message as it will be kept."""

    received_at: datetime
    topic: str
    gateway: str | None
    reason: str
    field: str | None
    payload: bytes
    digest: str  # sha256 of the whole payload, not of the sample

    @classmethod
    def refused(
        cls,
        *,
        received_at: datetime,
        topic: str,
        gateway: str | None,
        reason: str,
        field: str | None,
        payload: bytes,
    ) -> Letter:
        """A refused message as it is kept: the first :data:`SAMPLE_BYTES` of its payload
        (the reason says when it was cut), the sha256 of the whole, text fields bounded
        to their columns."""
        sample = payload[:SAMPLE_BYTES]
        if len(payload) > SAMPLE_BYTES:
            reason += f" (payload of {len(payload)} bytes kept truncated to {len(sample)})"
        return cls(
            received_at=received_at,
            topic=topic[:600],
            gateway=gateway,
            reason=reason[:1000],
            field=field[:200] if field else None,
            payload=sample,
            digest=hashlib.sha256(payload).hexdigest(),
        )

    @property
    def size(self) -> int:
        """What the row costs against the cap (characters of text, bytes of payload)."""
        return len(self.payload) + len(self.reason) + len(self.topic)

    @property
    def key(self) -> tuple[str | None, str, str]:
        return self.gateway, self.topic, self.digest


@dataclass(slots=True)
class _Pending:
    letter: Letter
    count: int
    last_seen: datetime


@dataclass(slots=True)
class _Usage:
    rows: int = 0
    bytes: int = 0


@dataclass
class SaveReport:
    """What :func:`save` did: rows added, repeats counted in rows, messages dropped."""

    kept: int = 0
    counted: int = 0
    dropped: dict[str | None, int] = field(default_factory=dict)


def save(session: Session, letters: Sequence[Letter], caps: Caps | None = None) -> SaveReport:
    """Keep ``letters`` (see :meth:`Letter.refused`) in the caller's transaction, within
    each gateway's cap; see the module docstring."""
    report = SaveReport()
    if not letters:
        return report
    caps = caps or current_caps()
    pending: dict[tuple[str | None, str, str], _Pending] = {}
    for one in letters:
        if one.key in pending:
            pending[one.key].count += 1
            pending[one.key].last_seen = max(pending[one.key].last_seen, one.received_at)
        else:
            pending[one.key] = _Pending(one, 1, one.received_at)
    fresh = _count_repeats(session, pending, report)
    kept = _within_caps(session, fresh, caps, report)
    if kept:
        session.execute(
            insert(m.DeadLetter),
            [
                {
                    "received_at": p.letter.received_at,
                    "topic": p.letter.topic,
                    "gateway": p.letter.gateway,
                    "reason": p.letter.reason,
                    "field": p.letter.field,
                    "payload": p.letter.payload,
                    "digest": p.letter.digest,
                    "count": p.count,
                    "last_seen": p.last_seen,
                }
                for p in kept
            ],
        )
        report.kept = len(kept)
        metrics.DEAD_LETTER_BYTES.inc(sum(p.letter.size for p in kept))
    if report.dropped:
        _note_dropped(session, report.dropped, fresh, caps)
    return report


def _count_repeats(
    session: Session, pending: dict[tuple[str | None, str, str], _Pending], report: SaveReport
) -> list[_Pending]:
    """Count repeats of items already kept in their rows; the rest, in arrival order."""
    digests = sorted({digest for _, _, digest in pending})
    latest: dict[tuple[str | None, str, str], m.DeadLetter] = {}
    for row in session.scalars(
        select(m.DeadLetter).where(m.DeadLetter.digest.in_(digests)).order_by(m.DeadLetter.pk)
    ):
        key = (row.gateway, row.topic, row.digest or "")
        if key in pending:
            latest[key] = row  # the newest row of each item
    fresh = []
    for key, p in pending.items():
        same = latest.get(key)
        if same is None:
            fresh.append(p)
            continue
        same.count += p.count
        same.last_seen = max(same.last_seen or same.received_at, p.last_seen)
        same.reason = p.letter.reason  # the latest reason (the code may have changed)
        report.counted += p.count
    return fresh


def _within_caps(
    session: Session, fresh: list[_Pending], caps: Caps, report: SaveReport
) -> list[_Pending]:
    if not fresh:
        return []
    usage = _usage(
        session,
        {p.letter.gateway for p in fresh},
        max(p.letter.received_at for p in fresh) - caps.window,
    )
    kept = []
    for p in fresh:
        gateway = p.letter.gateway
        used = usage.setdefault(gateway, _Usage())
        over = (
            "rows_cap"
            if used.rows + 1 > caps.max_rows
            else "bytes_cap"
            if used.bytes + p.letter.size > caps.max_bytes
            else None
        )
        if over is None:
            used.rows += 1
            used.bytes += p.letter.size
            kept.append(p)
            continue
        report.dropped[gateway] = report.dropped.get(gateway, 0) + p.count
        metrics.DEAD_LETTERS_DROPPED.labels(over).inc(p.count)
    return kept


def _usage(
    session: Session, gateways: set[str | None], since: datetime
) -> dict[str | None, _Usage]:
    """Rows and bytes each gateway's dead letters hold since ``since``: one query."""
    named = sorted(g for g in gateways if g is not None)
    who = [m.DeadLetter.gateway.in_(named)] if named else []
    if None in gateways:
        who.append(m.DeadLetter.gateway.is_(None))
    size = (
        func.coalesce(func.length(m.DeadLetter.payload), 0)
        + func.length(m.DeadLetter.reason)
        + func.length(m.DeadLetter.topic)
    )
    query = (
        select(m.DeadLetter.gateway, func.count(), func.coalesce(func.sum(size), 0))
        .where(m.DeadLetter.received_at >= since, or_(*who))
        .group_by(m.DeadLetter.gateway)
    )
    return {gateway: _Usage(int(rows), int(used)) for gateway, rows, used in session.execute(query)}


def _note_dropped(
    session: Session, dropped: dict[str | None, int], fresh: list[_Pending], caps: Caps
) -> None:
    """Count the dropped per gateway and raise (or count into) its ``gateway_junk`` alert."""
    latest = {p.letter.gateway: p.letter for p in fresh}
    for who, count in sorted(dropped.items(), key=lambda kv: kv[0] or ""):
        sample = latest[who]
        log.warning(
            "dead letters of gateway %s over the cap (%d rows / %d bytes per %s): %d "
            "dropped, counted only; latest: %s",
            who or "(unregistered)",
            caps.max_rows,
            caps.max_bytes,
            caps.window,
            count,
            sample.reason[:200],
        )
        gw = session.get(m.Gateway, who) if who is not None else None
        if gw is None:
            continue  # unregistered: the metric and the log are all there is to count on
        gateway = gw.id
        gw.dead_letters_dropped = (gw.dead_letters_dropped or 0) + count
        now = max(p.letter.received_at for p in fresh if p.letter.gateway == gateway)
        # the alert folds like any other: one live alert per gateway, counting batches
        note = (
            f"gateway {gateway} keeps sending bad messages: {gw.dead_letters_dropped} over "
            f"its dead-letter cap counted, not kept ({caps.max_rows} rows / "
            f"{caps.max_bytes} bytes per {int(caps.window.total_seconds())} s); latest: "
            f"{sample.reason}"
        )
        junk = Event(
            kind=JUNK_ALERT_KIND,
            source=gateway,
            severity=Severity.WARNING,
            ts=now,
            message=_printable(note)[:500],
        )
        fold_event(session, junk, gw, now)


def _printable(text: str) -> str:
    # a reason may quote what the gateway sent; an alert's message refuses control characters
    return "".join(ch if ch.isprintable() else "?" for ch in text)
