"""Fusion (告警关联): link live alerts a rule finds related in place and time.

A pass looks at the live alerts of the rules' kinds that were touched (``updated_at``,
indexed) since its watermark, and pairs each with the live alerts of its compound; the
first rule (in file order, :func:`cloud.fusion.rules.first_rule`) that matches a pair
links it. Each link is made in its own short transaction:

1. both alerts are locked, lower id first (on PostgreSQL; SQLite's writers take the
   whole database one at a time), read fresh and matched again: an alert resolved since
   the read is not linked;
2. the link row is inserted in a savepoint. Its pair is stored lower id first under a
   unique constraint, so of several processes making the same link at once exactly one
   inserts it; the others' inserts fail, their savepoints are undone and they go on;
3. both alerts' logs get a ``linked`` line (关联告警 #id：reason), and where the rule says
   both are raised to its severity (never lowered), each raise a ``severity_raised``
   line of its own; a raised alert that is still waiting to be acknowledged has its
   escalation clock brought forward to the new severity's deadline, if that is sooner.

Writing the log wakes the live consoles (they read the alert log). Counted in
Prometheus: ``mb_fusion_links_total{rule}``, ``mb_fusion_severity_raised_total{rule}``,
``mb_fusion_link_races_total``, ``mb_fusion_link_failures_total``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from prometheus_client import Counter
from sqlalchemy import Select, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.alerts.audit import record
from cloud.alerts.policy import policy_for
from cloud.db import models as m
from cloud.db import transaction
from cloud.fusion.rules import FusionRule, FusionRules, Seen, first_rule
from microbrain.protocol import Severity

log = logging.getLogger(__name__)

ACTOR = "system:fusion"
CHUNK = 500  # ids in one IN (...): well inside SQLite's and PostgreSQL's bind limits
# the severities as the console names them (messages/zh-CN.yaml ``severity``): the log
# line is written once, in the language of the people who read it
SEVERITY_ZH = {Severity.INFO: "提示", Severity.WARNING: "警告", Severity.CRITICAL: "紧急"}
ESCALATING_LEVELS = ("building", "compound", "community")

LINKED = Counter("mb_fusion_links_total", "related alert pairs linked, by rule", ["rule"])
RAISED = Counter(
    "mb_fusion_severity_raised_total", "alerts a fusion rule raised in severity, by rule", ["rule"]
)
RACES = Counter(
    "mb_fusion_link_races_total", "links found already made (by another process) when made"
)
FAILURES = Counter(
    "mb_fusion_link_failures_total", "links whose transaction failed (tried again next pass)"
)

Outcome = Literal["linked", "already", "stale"]


@dataclass(frozen=True, slots=True)
class Link:
    """A link this pass made: the pair (lower id first), the rule, the alerts it raised."""

    lo: int
    hi: int
    rule: str
    raised: tuple[int, ...]


@dataclass(slots=True)
class FusionReport:
    """What one pass did. ``touched``: live alerts of the rules' kinds looked at;
    ``pairs``: pairs a rule matched that had no link yet; ``already``: of those, linked
    by another process meanwhile; ``stale``: no longer live or matching once locked;
    ``failed``: transactions that failed (the next pass tries them again)."""

    touched: int = 0
    pairs: int = 0
    linked: int = 0
    raised: int = 0
    already: int = 0
    stale: int = 0
    failed: int = 0
    links: list[Link] = field(default_factory=list)


def seen(alert: m.Alert) -> Seen:
    """The matching's view of an alert: its span of edge time, first to latest event."""
    return Seen(
        id=alert.id,
        kind=alert.kind,
        community=alert.community,
        compound=alert.compound,
        building=alert.building,
        zone=alert.zone,
        first=alert.first_ts,
        last=alert.last_ts,
    )


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _live(kinds: Collection[str]) -> Select[m.Alert]:
    return select(m.Alert).where(m.Alert.active.is_(True), m.Alert.kind.in_(sorted(kinds)))


def _touched(
    session: Session, rules: FusionRules, since: datetime | None, ids: Collection[int] | None
) -> list[Seen]:
    if ids is not None:
        wanted = sorted(set(ids))
        return [
            seen(a)
            for part in _chunks(wanted)
            for a in session.scalars(_live(rules.kinds).where(m.Alert.id.in_(part)))
        ]
    stmt = _live(rules.kinds)
    if since is not None:
        stmt = stmt.where(m.Alert.updated_at >= since)  # ix_alerts_updated_at
    return [seen(a) for a in session.scalars(stmt)]


def _partners(session: Session, rules: FusionRules, touched: Iterable[Seen]) -> list[Seen]:
    """The live alerts of the rules' kinds in the touched alerts' compounds
    (ix_alerts_kind_place), the touched among them."""
    places = sorted({(t.community, t.compound) for t in touched})
    out: list[Seen] = []
    for start in range(0, len(places), CHUNK):
        part = places[start : start + CHUNK]
        rows = session.scalars(
            _live(rules.kinds).where(
                m.Alert.community.in_({k for k, _ in part}),
                m.Alert.compound.in_({c for _, c in part}),
            )
        )
        wanted = set(part)
        out.extend(seen(a) for a in rows if (a.community, a.compound) in wanted)
    return out


def _linked(session: Session, pairs: Collection[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of ``pairs`` (lower id first) that have a link already."""
    los = sorted({lo for lo, _ in pairs})
    found: set[tuple[int, int]] = set()
    for part in _chunks(los):
        found.update(
            (int(lo), int(hi))
            for lo, hi in session.execute(
                select(m.AlertLink.alert_lo, m.AlertLink.alert_hi).where(
                    m.AlertLink.alert_lo.in_(part)
                )
            )
        )
    return found & set(pairs)


def candidates(
    session: Session,
    rules: FusionRules,
    *,
    since: datetime | None = None,
    ids: Collection[int] | None = None,
) -> tuple[int, list[tuple[int, int]]]:
    """(how many live alerts were touched, the unlinked pairs a rule matches, lower id
    first, in id order): touched since ``since`` (None: every live alert) or, with
    ``ids``, those alerts."""
    touched = _touched(session, rules, since, ids)
    if not touched:
        return 0, []
    by_place: dict[tuple[str, str], list[Seen]] = defaultdict(list)
    for p in _partners(session, rules, touched):
        by_place[(p.community, p.compound)].append(p)
    pairs: set[tuple[int, int]] = set()
    for t in touched:
        for p in by_place[(t.community, t.compound)]:
            pair = (t.id, p.id) if t.id < p.id else (p.id, t.id)
            if p.id != t.id and pair not in pairs and first_rule(rules, t, p) is not None:
                pairs.add(pair)
    if pairs:
        pairs -= _linked(session, pairs)
    return len(touched), sorted(pairs)


def _hasten_clock(session: Session, alert: m.Alert, now: datetime) -> None:
    """An unacknowledged alert raised in severity escalates on the new severity's
    deadline from now, when that is sooner than the clock it has (the caller holds the
    alert's lock, which escalation takes before the deadline's)."""
    row = session.get(m.EscalationDeadline, alert.id, populate_existing=True)
    if row is None or row.level not in ESCALATING_LEVELS:
        return
    policy = policy_for(session, alert.community, alert.compound)
    due = now + timedelta(seconds=policy.deadline(row.level, Severity(alert.severity)))
    if due < row.due_at:
        row.due_at = due


def _lock_pair(session: Session, lo: int, hi: int) -> list[m.Alert]:
    # lower id first: two passes linking overlapping pairs take their locks in one order
    return list(
        session.scalars(
            select(m.Alert)
            .where(m.Alert.id.in_((lo, hi)))
            .order_by(m.Alert.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def link_pair(
    session: Session, rules: FusionRules, lo: int, hi: int, now: datetime
) -> tuple[Outcome, Link | None]:
    """Link alerts ``lo`` < ``hi`` if a rule still matches them, once; the caller commits.
    ``already`` when the link exists (another process made it), ``stale`` when they are
    no longer both live or no rule matches them now."""
    rows = _lock_pair(session, lo, hi)
    if len(rows) != 2 or not all(a.active for a in rows):
        return "stale", None
    first, second = rows
    rule = first_rule(rules, seen(first), seen(second))
    if rule is None:
        return "stale", None
    exists = select(m.AlertLink.id).where(m.AlertLink.alert_lo == lo, m.AlertLink.alert_hi == hi)
    if session.scalar(exists) is not None:
        return "already", None  # made by another process while we waited for the locks
    made = m.AlertLink(
        alert_lo=lo,
        alert_hi=hi,
        rule=rule.id,
        reason=rule.reason,
        raised_to=int(rule.raise_to) if rule.raise_to is not None else None,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(made)
            session.flush()
    except IntegrityError:
        # the pair's unique constraint: another process linked it first
        return "already", None
    raised = []
    for alert, other in ((first, second), (second, first)):
        if _note(session, rule, alert, other, now):
            raised.append(alert.id)
    return "linked", Link(lo, hi, rule.id, tuple(raised))


def _note(
    session: Session, rule: FusionRule, alert: m.Alert, other: m.Alert, now: datetime
) -> bool:
    """Write the link on ``alert``'s log, and raise it if the rule says; True if raised."""
    alert.updated_at = now
    record(
        session,
        alert,
        "linked",
        from_status=alert.status,
        actor=ACTOR,
        at=now,
        note=f"关联告警 #{other.id}：{rule.reason}",
    )
    if rule.raise_to is None or alert.severity >= rule.raise_to:
        return False
    before = Severity(alert.severity)
    alert.severity = int(rule.raise_to)
    _hasten_clock(session, alert, now)
    record(
        session,
        alert,
        "severity_raised",
        from_status=alert.status,
        actor=ACTOR,
        at=now,
        note=(
            f"严重程度 {SEVERITY_ZH[before]} → {SEVERITY_ZH[rule.raise_to]}"
            f"（关联告警 #{other.id}，规则 {rule.id}）"
        ),
    )
    return True


def _fuse(
    factory: sessionmaker[Session],
    now: datetime,
    rules: FusionRules,
    *,
    since: datetime | None = None,
    ids: Collection[int] | None = None,
) -> FusionReport:
    report = FusionReport()
    if not rules.rules:
        return report
    with transaction(factory) as session:
        report.touched, pairs = candidates(session, rules, since=since, ids=ids)
    report.pairs = len(pairs)
    for lo, hi in pairs:
        try:
            with transaction(factory) as session:
                outcome, made = link_pair(session, rules, lo, hi, now)
        except DBAPIError:
            # a deadlock with an ingest batch, a lost connection: this pair waits for
            # the next pass (the step keeps its watermark), the others go on
            FAILURES.inc()
            report.failed += 1
            log.exception("fusion: linking alerts %d and %d failed", lo, hi)
            continue
        if made is not None:
            report.linked += 1
            report.raised += len(made.raised)
            report.links.append(made)
            LINKED.labels(made.rule).inc()
            RAISED.labels(made.rule).inc(len(made.raised))
            log.info("fusion: linked alerts %d and %d (rule %s)", lo, hi, made.rule)
        elif outcome == "already":
            RACES.inc()
            report.already += 1
        else:
            report.stale += 1
    return report


def run(
    factory: sessionmaker[Session],
    now: datetime,
    rules: FusionRules,
    *,
    since: datetime | None = None,
) -> FusionReport:
    """One pass (the scheduler's step): link the live alerts touched since ``since``
    (default: within the rules' largest window before ``now``) with their partners."""
    if since is None:
        since = now - timedelta(seconds=rules.lookback_s)
    return _fuse(factory, now, rules, since=since)


def fuse_alerts(
    factory: sessionmaker[Session], alert_ids: Collection[int], now: datetime, rules: FusionRules
) -> FusionReport:
    """Link the alerts ``alert_ids`` with their partners at once: for the ingest to call
    after it commits a batch (``StoreResult.alerts``), so a link need not wait for the
    next scheduler pass. The pass would make it anyway: this only makes it sooner."""
    return _fuse(factory, now, rules, ids=alert_ids)


class FusionStep:
    """The scheduler's step with a watermark: its first pass looks at every live alert
    (a restart catches up), each later one at the alerts touched since the previous
    pass began, less ``margin_s`` (another process's commit may carry an ``updated_at``
    a little older than ours). A pass with a failed link keeps the old watermark, so the
    pair is tried again. Returns whether it linked anything (to wake the consoles)."""

    def __init__(
        self, factory: sessionmaker[Session], rules: FusionRules, *, margin_s: float = 60.0
    ) -> None:
        self.factory = factory
        self.rules = rules
        self.margin = timedelta(seconds=margin_s)
        self.since: datetime | None = None
        self.last: FusionReport | None = None

    def __call__(self, now: datetime) -> bool:
        report = _fuse(self.factory, now, self.rules, since=self.since)
        if not report.failed:
            self.since = now - self.margin
        self.last = report
        return report.linked > 0


__all__ = [
    "FusionReport",
    "FusionStep",
    "Link",
    "candidates",
    "fuse_alerts",
    "link_pair",
    "run",
    "seen",
]
