"""Early warning against a subject's own baseline (自身基线预警).

An elevator's fault events, or a compound's residents' appeals, are counted per hour of
the week (Asia/Shanghai) over the weeks before the window being judged; the window's
expected count λ is the sum of those hourly rates over its hours, and the observed count
k warns when the Poisson upper tail ``P(X ≥ k | λ) = poisson.sf(k - 1, λ)`` is below the
rule's ``alpha`` (and ``k ≥ min_count``). A ``<kind>_rate_high`` warning is raised at the
subject's place with the evidence (k, λ, p, the window, the weeks of history) in Chinese,
and cleared once the window is back within its baseline (``p ≥ clear_alpha`` or
``k < min_count``: the gap between the two alphas keeps a warning from flapping).

The rate of an hour of the week is smoothed (:func:`expected_rates`)::

    rate[h] = max((c[h] + m · r̄) / (W + m), floor)

``c[h]`` the events in that hour over the ``W`` weeks of history, ``r̄`` the subject's
overall hourly rate over them, ``m`` the rule's ``prior_weeks`` (a Gamma prior worth m
weeks at the overall rate: a sparse hour borrows from the subject's whole week, the total
over the week is kept) and ``floor`` the rule's ``floor_per_week / 168`` (so a subject
quiet in its history still has a λ above zero, and one event is never a warning).

The history is whole weeks: as many of the rule's ``history_weeks`` as lie after the
subject was first heard of (an elevator: its gateway's first event; a compound: its first
appeal); fewer than ``min_history_weeks`` is "insufficient", never a warning. The window
ends at the last whole hour (the current hour is judged when it is complete).

Counting is set-based: one grouped query per rule (subject × hour), one for the first-seen
times, one for the standing warnings. Raising and clearing go through
:func:`cloud.alerts.fold_event` like the trend warnings (:mod:`cloud.warning.service`):
one live alert per key, exactly once across processes (a racing opener's savepoint is
undone on the alerts' unique live key).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo

import numpy as np
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from scipy.stats import poisson
from sqlalchemy import ColumnElement, Integer, func, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.alerts import alert_key, fold_event, live_alert, store_cloud_event
from cloud.db import models as m
from cloud.db import transaction
from microbrain.config_files import load_yaml
from microbrain.protocol import Event, EventState, Severity

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOURS_PER_WEEK = 168
HOUR = timedelta(hours=1)
WEEK = timedelta(weeks=1)
# the place a compound-level warning (appeals) is raised from: no gateway sends it
CLOUD_SOURCE = "cloud"

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,55}$")]

EVALUATED = Counter(
    "mb_warning_baseline_evaluations_total",
    "subjects judged against their own hour-of-week baseline, by alert kind and outcome "
    "(raised, refreshed, cleared, quiet, insufficient, skipped)",
    ["kind", "action"],
)
RAISED = Counter(
    "mb_warning_baseline_raised_total",
    "rate-above-baseline warnings opened, by alert kind",
    ["kind"],
)
CLEARED = Counter(
    "mb_warning_baseline_cleared_total",
    "rate-above-baseline warnings cleared (back within baseline), by alert kind",
    ["kind"],
)


# --- the policy ----------------------------------------------------------------------


class BaselineRule(BaseModel):
    """Warn when a subject's count in the last ``window_h`` hours is improbably high for
    its own hour-of-week baseline.

    ``subject`` says what is counted and per what: ``events`` — raised events of ``kind``
    per device (gateway and source, at the device's building); ``appeals`` — residents'
    appeals per compound (of ``categories``, or all when empty).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    subject: Literal["events", "appeals"]
    kind: Id = Field(description="events: the event kind counted; appeals: the rate's name")
    label: str = Field(min_length=1, max_length=32, description="its Chinese name in messages")
    categories: tuple[Id, ...] = Field(default=(), description="appeals only; empty: all")
    history_weeks: int = Field(default=8, ge=1, le=52, description="weeks of baseline")
    min_history_weeks: int = Field(default=4, ge=1, le=52, description="fewer: no verdict")
    window_h: int = Field(default=168, ge=1, le=24 * 28, description="hours judged")
    alpha: float = Field(default=1e-3, gt=0, lt=0.5, description="warn below this tail p")
    clear_alpha: float = Field(default=0.05, gt=0, lt=1, description="clear at/above this p")
    min_count: int = Field(default=5, ge=1, le=100_000, description="fewer never warn")
    prior_weeks: float = Field(default=2.0, ge=0, le=52, description="smoothing weight m")
    floor_per_week: float = Field(default=1.0, gt=0, le=1e6, description="least λ a week")

    @model_validator(mode="after")
    def _consistent(self) -> BaselineRule:
        if self.min_history_weeks > self.history_weeks:
            raise ValueError(
                f"min_history_weeks {self.min_history_weeks} > history_weeks {self.history_weeks}"
            )
        if self.clear_alpha <= self.alpha:
            raise ValueError(f"clear_alpha {self.clear_alpha} must be above alpha {self.alpha}")
        if self.categories and self.subject != "appeals":
            raise ValueError("categories are for the appeals subject only")
        return self

    @property
    def alert_kind(self) -> str:
        """The alert kind a warning of this rule opens: ``<kind>_rate_high``."""
        return f"{self.kind}_rate_high"


class BaselinePolicy(BaseModel):
    """The rules, at most one per alert kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[BaselineRule, ...] = ()

    @model_validator(mode="after")
    def _distinct(self) -> BaselinePolicy:
        kinds = [r.alert_kind for r in self.rules]
        dup = sorted({k for k in kinds if kinds.count(k) > 1})
        if dup:
            raise ValueError(f"two rules for {', '.join(dup)}")
        return self


ELEVATOR_FAULT_RULE = BaselineRule(subject="events", kind="elevator_fault", label="电梯故障")
APPEAL_RULE = BaselineRule(subject="appeals", kind="appeal", label="居民诉求")
DEFAULT_BASELINES = BaselinePolicy(rules=(ELEVATOR_FAULT_RULE, APPEAL_RULE))


def load_baselines(path: str | Path) -> BaselinePolicy:
    """The policy from a YAML file (``rules: [...]``), strictly: an unknown key or a bad
    value names the file and its line."""
    return load_yaml(path, BaselinePolicy)


# --- the pure core -------------------------------------------------------------------


def hour_of_week(t: datetime) -> int:
    """0 … 167: Monday 00:00–01:00 Beijing time is 0 (China keeps no summer time)."""
    local = t.astimezone(SHANGHAI)
    return local.weekday() * 24 + local.hour


def window_profile(start: datetime, hours: int) -> np.ndarray:
    """How many of the window's hours fall on each hour of the week (shape (168,))."""
    first = hour_of_week(start)
    hows = (first + np.arange(hours)) % HOURS_PER_WEEK
    return np.bincount(hows, minlength=HOURS_PER_WEEK).astype(np.float64)


def expected_rates(
    counts: np.ndarray, weeks: int | np.ndarray, prior_weeks: float, floor_per_hour: float
) -> np.ndarray:
    """Smoothed hourly rates per hour of the week (see the module's rule).

    ``counts`` has shape (..., 168): the events per hour of the week over ``weeks`` weeks
    of history (a number, or one per row).

    >>> expected_rates(np.array([7.0] + [0.0] * 167), 7, 0.0, 0.0)[0]
    np.float64(1.0)
    """
    counts = np.asarray(counts, dtype=np.float64)
    w = np.asarray(weeks, dtype=np.float64)[..., None]
    overall = counts.sum(axis=-1, keepdims=True) / (w * HOURS_PER_WEEK)
    rates = (counts + prior_weeks * overall) / (w + prior_weeks)
    floored: np.ndarray = np.maximum(rates, floor_per_hour)
    return floored


def upper_tail(k: int, expected: float) -> float:
    """``P(X ≥ k)`` for ``X ~ Poisson(expected)`` (1 for k ≤ 0)."""
    if k <= 0:
        return 1.0
    return float(poisson.sf(k - 1, expected))


@dataclass(frozen=True, slots=True)
class Verdict:
    observed: int
    expected: float
    p: float
    warn: bool  # improbably high: raise (or keep) the warning
    within: bool  # back within baseline: clear a standing warning


def judge(rule: BaselineRule, observed: int, expected: float) -> Verdict:
    """The Poisson test of one window (see the module)."""
    p = upper_tail(observed, expected)
    warn = observed >= rule.min_count and p < rule.alpha
    within = observed < rule.min_count or p >= rule.clear_alpha
    return Verdict(observed, expected, p, warn, within)


# --- over the database ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subject:
    """What is counted, at its place: a device (gateway, source) or a compound."""

    community: str
    compound: str
    building: str | None
    gateway: str | None  # None: a compound (appeals)
    source: str


@dataclass(frozen=True, slots=True)
class Assessment:
    """One subject's window judged against its own baseline."""

    rule: BaselineRule
    subject: Subject
    weeks: int  # weeks of history used
    verdict: Verdict | None  # None: insufficient history
    action: str  # raised | refreshed | cleared | quiet | insufficient | skipped


@dataclass(slots=True)
class BaselineReport:
    evaluated: int = 0
    raised: int = 0
    refreshed: int = 0
    cleared: int = 0
    insufficient: int = 0
    assessments: list[Assessment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Bounds:
    """[history_start, window_start) is the history, [window_start, end) the window."""

    history_start: datetime
    window_start: datetime
    end: datetime

    @classmethod
    def of(cls, rule: BaselineRule, now: datetime) -> Bounds:
        end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        window_start = end - rule.window_h * HOUR
        return cls(window_start - rule.history_weeks * WEEK, window_start, end)


@dataclass(slots=True)
class _Tally:
    """A subject's counts: the history by week and hour of the week (shape (weeks, 168):
    the weeks before its first-seen time are dropped later), and the window's."""

    by_week: np.ndarray
    observed: int = 0

    @classmethod
    def empty(cls, weeks: int) -> _Tally:
        return cls(np.zeros((weeks, HOURS_PER_WEEK)))


def _epoch_s(session: Session, column: Any) -> ColumnElement[Any]:
    """Whole seconds since 1970 of a stored time, in SQL (SQLite keeps text)."""
    if session.get_bind().dialect.name == "sqlite":
        return sql_cast(func.strftime("%s", column), Integer)
    return cast(ColumnElement[Any], func.extract("epoch", column))


def _hour_index(session: Session, column: Any, origin: datetime) -> ColumnElement[Any]:
    """Whole hours from ``origin`` (an hour boundary) to a stored time, in SQL."""
    offset = _epoch_s(session, column) - int(origin.timestamp())
    if session.get_bind().dialect.name == "sqlite":
        whole: ColumnElement[Any] = offset // 3600  # integers: SQLite divides whole
    else:  # numeric seconds: floor, not a cast that rounds
        whole = func.floor(offset / 3600)
    return sql_cast(whole, Integer).label("hour")


def _counts(
    session: Session, rule: BaselineRule, b: Bounds, community: str | None
) -> list[tuple[Subject, int, int]]:
    """(subject, hour index from history_start, count), one grouped query."""
    if rule.subject == "events":
        ev = m.EventRow
        hour = _hour_index(session, ev.ts, b.history_start)
        where = [ev.kind == rule.kind, ev.state == EventState.RAISED.value]
        where += [ev.ts >= b.history_start, ev.ts < b.end]
        if community is not None:
            where.append(ev.community == community)
        cols = (ev.community, ev.compound, ev.building, ev.gateway, ev.source)
        rows = session.execute(
            select(*cols, hour, func.count()).where(*where).group_by(*cols, hour)
        )
        return [(Subject(c, k, bd, g, s), int(h), int(n)) for c, k, bd, g, s, h, n in rows]
    ap = m.Appeal
    hour = _hour_index(session, ap.created_at, b.history_start)
    where = [ap.created_at >= b.history_start, ap.created_at < b.end]
    if rule.categories:
        where.append(ap.category.in_(rule.categories))
    if community is not None:
        where.append(ap.community == community)
    rows = session.execute(
        select(ap.community, ap.compound, hour, func.count())
        .where(*where)
        .group_by(ap.community, ap.compound, hour)
    )
    return [(Subject(c, k, None, None, CLOUD_SOURCE), int(h), int(n)) for c, k, h, n in rows]


def _first_seen(
    session: Session, rule: BaselineRule, subjects: Iterable[Subject]
) -> dict[Subject, datetime]:
    """When each subject was first heard of (one grouped query): a device's gateway's
    first event of any kind, a compound's first appeal."""
    subjects = list(subjects)
    if rule.subject == "events":
        gateways = sorted({s.gateway for s in subjects if s.gateway is not None})
        firsts: dict[Any, datetime] = {}
        for chunk in _chunks(gateways):
            rows = session.execute(
                select(m.EventRow.gateway, func.min(m.EventRow.ts))
                .where(m.EventRow.gateway.in_(chunk))
                .group_by(m.EventRow.gateway)
            )
            firsts.update((gateway, first) for gateway, first in rows)
        return {s: firsts[s.gateway] for s in subjects if s.gateway in firsts}
    compounds = sorted({s.compound for s in subjects})
    by_place: dict[Any, datetime] = {}
    for chunk in _chunks(compounds):
        for c, k, first in session.execute(
            select(m.Appeal.community, m.Appeal.compound, func.min(m.Appeal.created_at))
            .where(m.Appeal.compound.in_(chunk))
            .group_by(m.Appeal.community, m.Appeal.compound)
        ):
            by_place[(c, k)] = first
    return {
        s: by_place[(s.community, s.compound)]
        for s in subjects
        if (s.community, s.compound) in by_place
    }


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _standing(session: Session, rule: BaselineRule, community: str | None) -> list[m.Alert]:
    """The rule's live warnings: each is judged even with nothing counted (to clear it)."""
    where = [m.Alert.kind == rule.alert_kind, m.Alert.active.is_(True)]
    if community is not None:
        where.append(m.Alert.community == community)
    return list(session.scalars(select(m.Alert).where(*where)))


def _tallies(
    rule: BaselineRule, b: Bounds, counts: list[tuple[Subject, int, int]]
) -> dict[Subject, _Tally]:
    first_how = hour_of_week(b.history_start)
    history_h = rule.history_weeks * HOURS_PER_WEEK
    tallies: dict[Subject, _Tally] = {}
    for subject, hour, n in counts:
        t = tallies.get(subject)
        if t is None:
            t = tallies[subject] = _Tally.empty(rule.history_weeks)
        if hour >= history_h:
            t.observed += n
        elif hour >= 0:
            t.by_week[hour // HOURS_PER_WEEK, (first_how + hour) % HOURS_PER_WEEK] += n
    return tallies


def _weeks(rule: BaselineRule, b: Bounds, first: datetime | None) -> int:
    """Whole weeks of history the subject has before the window (at most the rule's)."""
    if first is None:
        return 0
    return max(0, min(rule.history_weeks, math.floor((b.window_start - first) / WEEK)))


def _local(t: datetime) -> str:
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _where(subject: Subject) -> str:
    if subject.gateway is None:
        return f"小区 {subject.compound}"
    at = f"楼栋 {subject.building} " if subject.building else f"小区 {subject.compound} "
    return f"{at}设备 {subject.source}"


def _hours(h: int) -> str:
    return f"{h // 24} 天" if h % 24 == 0 else f"{h} 小时"


def _message(rule: BaselineRule, s: Subject, v: Verdict, weeks: int, b: Bounds) -> str:
    """The evidence in one line of Chinese (an alert message: no newlines, ≤ 500)."""
    head = "回落" if v.within else "预警"
    body = (
        f"{rule.label}频次{head}：{_where(s)} 近 {_hours(rule.window_h)}"
        f"（{_local(b.window_start)} 至 {_local(b.end)}，北京时间）{v.observed} 次，"
        f"按自身前 {weeks} 周同一时段基线预期 {v.expected:.1f} 次，"
        f"泊松上尾概率 p={v.p:.2g}"
    )
    if v.warn:
        tail = f"（< {rule.alpha:g}），明显高于自身基线"
    elif not v.within:  # a standing warning not yet back: between the two alphas
        tail = f"（< {rule.clear_alpha:g}），仍高于自身基线，预警保持"
    elif v.observed < rule.min_count:
        tail = f"，不足 {rule.min_count} 次，已回到基线范围，预警解除"
    else:
        tail = f"（≥ {rule.clear_alpha:g}），已回到基线范围，预警解除"
    return (body + tail)[:500]


def _evidence(rule: BaselineRule, v: Verdict, weeks: int, b: Bounds) -> dict[str, Any]:
    """The numbers behind a verdict (the event's ``detail``: flat scalars)."""
    return {
        "observed": v.observed,
        "expected": round(v.expected, 6),
        "p": float(f"{v.p:.6g}"),
        "alpha": rule.alpha,
        "clear_alpha": rule.clear_alpha,
        "window_h": rule.window_h,
        "window_start": b.window_start.isoformat(),
        "window_end": b.end.isoformat(),
        "history_weeks": weeks,
        "test": "poisson_upper_tail",
    }


def _origin(subject: Subject, gateways: dict[str, m.Gateway]) -> m.Gateway | None:
    """The gateway the warning is folded as coming from: the device's own, or for a
    compound a stand-in that is never stored (``cloud``: the cloud raised it)."""
    if subject.gateway is None:
        return m.Gateway(id=CLOUD_SOURCE, community=subject.community, compound=subject.compound)
    return gateways.get(subject.gateway)


def _act(
    session: Session,
    rule: BaselineRule,
    subject: Subject,
    v: Verdict,
    weeks: int,
    b: Bounds,
    gw: m.Gateway,
    now: datetime,
) -> str:
    """Raise, refresh or clear the subject's warning; the action taken."""
    kind = rule.alert_kind
    key = alert_key(
        kind, subject.community, subject.compound, subject.building, None, subject.source
    )
    alert = live_alert(session, key)
    if alert is not None and not v.within:
        # standing (still high, or between the two alphas): its numbers refreshed
        alert.message = _message(rule, subject, v, weeks, b)
        alert.last_ts = max(alert.last_ts, now)
        return "refreshed"
    if alert is None and not v.warn:
        return "quiet"
    event = Event(
        ts=now,
        kind=kind,
        state=EventState.RAISED if v.warn else EventState.CLEARED,
        severity=Severity.WARNING,
        building=subject.building,
        source=subject.source,
        message=_message(rule, subject, v, weeks, b),
        detail=_evidence(rule, v, weeks, b),
    )
    try:
        with session.begin_nested():
            touched = fold_event(session, event, gw, now)
            store_cloud_event(session, event, gw, touched)
    except IntegrityError:
        # another process opened the same warning a moment ago: it stands, once
        log.info("baseline warning %s opened by another process", key)
        return "refreshed"
    if v.warn:
        RAISED.labels(kind).inc()
        return "raised"
    CLEARED.labels(kind).inc()
    return "cleared"


def evaluate(
    session: Session,
    policy: BaselinePolicy | Iterable[BaselineRule],
    now: datetime,
    *,
    community: str | None = None,
) -> BaselineReport:
    """Judge every subject of every rule (in ``community`` only, when given) and raise,
    refresh or clear its warning; the caller commits."""
    rules = policy.rules if isinstance(policy, BaselinePolicy) else tuple(policy)
    report = BaselineReport()
    for rule in rules:
        b = Bounds.of(rule, now)
        tallies = _tallies(rule, b, _counts(session, rule, b, community))
        for alert in _standing(session, rule, community):
            s = Subject(
                alert.community,
                alert.compound,
                alert.building,
                None if alert.gateway == CLOUD_SOURCE else alert.gateway,
                alert.source,
            )
            tallies.setdefault(s, _Tally.empty(rule.history_weeks))
        firsts = _first_seen(session, rule, tallies)
        ids = sorted({s.gateway for s in tallies if s.gateway is not None})
        gateways = {
            g.id: g
            for chunk in _chunks(ids)
            for g in session.scalars(select(m.Gateway).where(m.Gateway.id.in_(chunk)))
        }
        profile = window_profile(b.window_start, rule.window_h)
        floor = rule.floor_per_week / HOURS_PER_WEEK
        for subject in sorted(
            tallies, key=lambda s: (s.community, s.compound, s.gateway or "", s.source)
        ):
            t = tallies[subject]
            weeks = _weeks(rule, b, firsts.get(subject))
            report.evaluated += 1
            gw = _origin(subject, gateways)
            if weeks < rule.min_history_weeks or gw is None:
                action = "insufficient" if weeks < rule.min_history_weeks else "skipped"
                report.insufficient += action == "insufficient"
                EVALUATED.labels(rule.alert_kind, action).inc()
                report.assessments.append(Assessment(rule, subject, weeks, None, action))
                continue
            history = t.by_week[rule.history_weeks - weeks :].sum(axis=0)
            rates = expected_rates(history, weeks, rule.prior_weeks, floor)
            v = judge(rule, t.observed, float(rates @ profile))
            action = _act(session, rule, subject, v, weeks, b, gw, now)
            EVALUATED.labels(rule.alert_kind, action).inc()
            report.raised += action == "raised"
            report.refreshed += action == "refreshed"
            report.cleared += action == "cleared"
            report.assessments.append(Assessment(rule, subject, weeks, v, action))
    return report


def run(
    factory: sessionmaker[Session],
    now: datetime,
    policy: BaselinePolicy | Iterable[BaselineRule] = DEFAULT_BASELINES,
) -> BaselineReport:
    """One evaluation in its own transaction (the scheduler's step, hourly)."""
    with transaction(factory) as session:
        report = evaluate(session, policy, now)
    if report.raised or report.cleared:
        log.info(
            "baseline warnings: %d evaluated, %d raised, %d cleared",
            report.evaluated,
            report.raised,
            report.cleared,
        )
    return report


__all__ = [
    "APPEAL_RULE",
    "DEFAULT_BASELINES",
    "ELEVATOR_FAULT_RULE",
    "Assessment",
    "BaselinePolicy",
    "BaselineReport",
    "BaselineRule",
    "Verdict",
    "evaluate",
    "expected_rates",
    "hour_of_week",
    "judge",
    "load_baselines",
    "run",
    "upper_tail",
    "window_profile",
]
