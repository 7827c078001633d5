"""Trend-to-threshold warnings (预警监测) over the stored readings.

For each sensor with hourly medians of a configured (kind, field) in a rule's window
(the completed hours, from :mod:`cloud.warning.rollup`: two queries for all of a rule's
sensors), every series is fitted at once (:func:`cloud.warning.trend.fit_many`, the
numbers of scipy's theilslopes); when the pessimistic bound of a fit crosses the limit
within the rule's horizon a ``<kind>_trend`` warning is raised at the sensor's place. It
is cleared with hysteresis (:func:`verdict`): only once the pessimistic crossing is
beyond ``clear_margin`` × the horizon, or the slope's whole interval points away from
the limit, and the clear's evidence says which. A warning is an ordinary alert: the
event is folded by :func:`cloud.alerts.fold_event` (one live alert per key, escalation,
the console, auto-resolve on the clear), and stored as an event row whose payload keeps
the evidence (the numbers, the window, the fit and its interval).

Several processes may evaluate at the same moment: a live warning is found (locked) and
refreshed, never opened twice; two opening it at once collide on the alerts' unique live
key, and the loser's savepoint is undone (its evaluation counts it as refreshed).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from prometheus_client import Counter
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.alerts import alert_key, fold_event, store_cloud_event
from cloud.db import models as m
from cloud.db import transaction
from cloud.warning import rollup
from cloud.warning.config import DEFAULT_RULES, TrendRule, TrendRules
from cloud.warning.trend import HOUR_S, Crossing, Fit, crossing, fit_many
from microbrain.protocol import Event, EventState, Severity

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")

EVALUATED = Counter(
    "mb_warning_trend_evaluations_total", "sensor series evaluated for a trend, by kind", ["kind"]
)
RAISED = Counter("mb_warning_trend_raised_total", "trend warnings opened, by alert kind", ["kind"])
CLEARED = Counter(
    "mb_warning_trend_cleared_total", "trend warnings cleared (recovered), by alert kind", ["kind"]
)


@dataclass(frozen=True, slots=True)
class Assessment:
    """One sensor's series judged against one rule."""

    gateway: str
    sensor: str
    rule: TrendRule
    points: int
    fit: Fit | None  # None: fewer than the rule's min_points
    crossing: Crossing | None
    warn: bool
    action: str  # raised | refreshed | cleared | quiet | insufficient | skipped


@dataclass(slots=True)
class TrendReport:
    evaluated: int = 0
    raised: int = 0
    refreshed: int = 0
    cleared: int = 0
    insufficient: int = 0
    assessments: list[Assessment] = field(default_factory=list)
    rollup: rollup.RollupReport | None = None  # what the cycle's catch-up did

    def add(self, a: Assessment) -> None:
        self.assessments.append(a)
        self.evaluated += 1
        if a.action == "raised":
            self.raised += 1
        elif a.action == "refreshed":
            self.refreshed += 1
        elif a.action == "cleared":
            self.cleared += 1
        elif a.action == "insufficient":
            self.insufficient += 1


def _rules(rules: TrendRules | Iterable[TrendRule]) -> tuple[TrendRule, ...]:
    return rules.rules if isinstance(rules, TrendRules) else tuple(rules)


def _local(posix_s: float) -> str:
    return datetime.fromtimestamp(posix_s, SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _evidence(rule: TrendRule, f: Fit, c: Crossing | None, now_s: float) -> dict[str, Any]:
    """The numbers behind a verdict (the event's ``detail``: flat scalars)."""
    detail: dict[str, Any] = {
        "field": rule.field,
        "direction": rule.direction,
        "limit": rule.limit,
        "current": round(f.value_at(now_s), 6),
        "slope_per_day": round(f.per_day(f.slope), 8),
        "slope_low_per_day": round(f.per_day(f.low_slope), 8),
        "slope_high_per_day": round(f.per_day(f.high_slope), 8),
        "confidence": f.confidence,
        "window_h": rule.window_h,
        "points": f.n,
        "first_point": datetime.fromtimestamp(f.start_s, UTC).isoformat(),
        "last_point": datetime.fromtimestamp(f.end_s, UTC).isoformat(),
        "horizon_h": rule.horizon_h,
        # hysteresis: a standing warning clears beyond this (or when none comes)
        "clear_after_h": rule.horizon_h * rule.clear_margin,
    }
    if c is not None:
        detail["pessimistic_at"] = datetime.fromtimestamp(c.pessimistic_s, UTC).isoformat()
        if c.expected_s is not None:
            detail["expected_at"] = datetime.fromtimestamp(c.expected_s, UTC).isoformat()
    return detail


def _message(
    sensor: str,
    rule: TrendRule,
    f: Fit,
    c: Crossing | None,
    now_s: float,
    *,
    recovery: str | None = None,
    found: Crossing | None = None,
) -> str:
    """The evidence in one line of Chinese (an alert message: no newlines, ≤ 500).

    ``c`` is the crossing of a warning that stands (None: it clears, ``recovery`` says
    why and ``found`` is the crossing beyond the band, if any)."""
    u = rule.unit
    way = "跌破" if rule.direction == "falling" else "超过"
    pct = round(f.confidence * 100)
    band = rule.horizon_h * rule.clear_margin
    head = (
        f"{rule.kind} 趋势预警：{sensor} {rule.field} 拟合当前 {f.value_at(now_s):.4f}{u}，"
        f"斜率 {f.per_day(f.slope):+.4f}{u}/天（{pct}% 区间 {f.per_day(f.low_slope):+.4f}"
        f"～{f.per_day(f.high_slope):+.4f}），Theil–Sen 拟合 {rule.window_h:g} 小时窗口 "
        f"{f.n} 个小时中位点（{_local(f.start_s)} 至 {_local(f.end_s)}）；"
        f"限值 {rule.limit:g}{u}" + (f"（{rule.source}）" if rule.source else "")
    )
    if c is None:
        if recovery == "beyond" and found is not None:
            return (
                head + f"；按{pct}%区间悲观估计最早 {_local(found.pessimistic_s)} 才{way}限值，"
                f"已超出解除阈 {band:g} 小时（预警期 {rule.horizon_h:g} 小时的 "
                f"{rule.clear_margin:g} 倍），预警解除"
            )[:500]
        return (
            head + f"；{rule.horizon_h:g} 小时内按悲观估计也不会{way}限值"
            f"（{pct}%区间的斜率均背离限值），预警解除"
        )[:500]
    expected = f"预计 {_local(c.expected_s)} {way}" if c.expected_s is not None else "中心趋势不达"
    tail = f"；{expected}，最早 {_local(c.pessimistic_s)}（北京时间，按{pct}%区间悲观估计）"
    if c.already:
        tail = f"；当前拟合值已{way}限值" + tail
    if c.pessimistic_s - now_s > rule.horizon_h * HOUR_S:
        tail += f"；未超出解除阈 {band:g} 小时，预警保持"
    text = head + tail
    return text[:500]


@dataclass(frozen=True, slots=True)
class _Series:
    id: int
    gateway: str
    sensor: str
    building: str | None


def _window(
    session: Session, rule: TrendRule, now: datetime
) -> tuple[list[_Series], np.ndarray, np.ndarray]:
    """The hourly medians of every series of the rule's (kind, field) in its window, as
    a matrix: a row per series (by gateway, sensor), a column per hour, NaN where an
    hour has none. Two queries, however many sensors."""
    hi = rollup.hour_of(now)  # rolled hours are complete: the window ends at the last
    lo = hi - int(rule.window_h)
    metas = [
        _Series(*row)
        for row in session.execute(
            select(
                m.ReadingSeries.id,
                m.ReadingSeries.gateway,
                m.ReadingSeries.sensor,
                m.ReadingSeries.building,
            )
            .where(
                m.ReadingSeries.kind == rule.kind,
                m.ReadingSeries.field == rule.field,
                m.ReadingSeries.last_hour >= lo,
            )
            .order_by(m.ReadingSeries.gateway, m.ReadingSeries.sensor)
        )
    ]
    r, sr = m.ReadingRollup.__table__.c, m.ReadingSeries.__table__.c
    # the hour is not fetched: it is the median time's (a fifth fewer values to move)
    data = _numbers(
        session,
        select(r.series, r.t, r.value)
        .join(m.ReadingSeries.__table__, sr.id == r.series)
        .where(sr.kind == rule.kind, sr.field == rule.field, r.hour >= lo, r.hour < hi),
    )
    cols = hi - lo
    times = np.full((len(metas), cols), np.nan)
    values = np.full((len(metas), cols), np.nan)
    if data.size:
        ids = np.array([meta.id for meta in metas], dtype=np.float64)
        order = np.argsort(ids)
        at = np.minimum(np.searchsorted(ids[order], data[:, 0]), max(len(ids) - 1, 0))
        keep = (ids[order][at] == data[:, 0]) if len(ids) else np.zeros(len(data), dtype=bool)
        index = order[at[keep]]
        col = np.floor(data[keep, 1] / HOUR_S).astype(np.int64) - lo
        times[index, col] = data[keep, 1]
        values[index, col] = data[keep, 2]
    present = ~np.isnan(times).all(axis=1)
    kept = [meta for meta, has in zip(metas, present, strict=True) if has]
    return kept, times[present], values[present]


def _numbers(session: Session, statement: Select[Any]) -> np.ndarray:
    """The rows of an all-numbers query as one float array, through the driver's cursor:
    a week of hourly points for 10,000 sensors is 1.7 million rows, and building a
    SQLAlchemy row object for each costs more than the query itself."""
    conn = session.connection()
    compiled = statement.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args: Any = (
        tuple(params[name] for name in compiled.positiontup or ())
        if compiled.positional
        else params
    )
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    width = len(statement.selected_columns)
    return np.fromiter(chain.from_iterable(rows), dtype=np.float64).reshape(-1, width)


def _live_alerts(session: Session, kind: str) -> dict[str, m.Alert]:
    """The rule's live warnings, locked, by key: one query for all its sensors."""
    alerts = session.scalars(
        select(m.Alert)
        .where(m.Alert.kind == kind, m.Alert.active.is_(True))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {a.key: a for a in alerts if a.active}


def verdict(
    rule: TrendRule, c: Crossing | None, now_s: float, standing: bool
) -> tuple[bool, str | None]:
    """Whether the warning stands after this fit, and why a standing one clears.

    It is raised when the pessimistic crossing is within the horizon; once standing, it
    clears only when that crossing is beyond ``clear_margin`` horizons (``beyond``) or
    never comes, the slope's whole interval pointing away from the limit (``away``):
    between the two it holds, so a series hovering at the horizon raises once.
    """
    if c is None:
        return False, "away" if standing else None
    ahead = c.pessimistic_s - now_s
    if ahead <= rule.horizon_h * HOUR_S:
        return True, None
    if standing and ahead <= rule.horizon_h * rule.clear_margin * HOUR_S:
        return True, None  # inside the hysteresis band: it holds
    return False, "beyond" if standing else None


def _evaluate_rule(session: Session, rule: TrendRule, now: datetime, report: TrendReport) -> None:
    now_s = now.timestamp()
    metas, times, values = _window(session, rule, now)
    if not metas:
        return
    EVALUATED.labels(rule.kind).inc(len(metas))
    fits = fit_many(times, values, rule.confidence)
    gateways = {
        g.id: g
        for g in session.scalars(
            select(m.Gateway).where(m.Gateway.id.in_(sorted({s.gateway for s in metas})))
        )
    }
    kind = rule.alert_kind
    live = _live_alerts(session, kind)
    for i, meta in enumerate(metas):
        points = int(fits.n[i])
        who = (meta.gateway, meta.sensor, rule, points)

        if points < rule.min_points or not fits.ok[i]:
            report.add(Assessment(*who, None, None, False, "insufficient"))
            continue
        f = fits.fit(i)
        c = crossing(f, rule.limit, rule.direction, now_s)
        gw = gateways.get(meta.gateway)
        if gw is None:
            warn, _ = verdict(rule, c, now_s, standing=False)
            report.add(Assessment(*who, f, c, warn, "skipped"))
            continue
        key = alert_key(kind, gw.community, gw.compound, meta.building, None, meta.sensor)
        alert = live.get(key)
        warn, recovery = verdict(rule, c, now_s, standing=alert is not None)
        shown = c if warn else None
        if not warn and alert is None:
            report.add(Assessment(*who, f, c, warn, "quiet"))
            continue
        message = _message(meta.sensor, rule, f, shown, now_s, recovery=recovery, found=c)
        if warn and alert is not None:
            # the same warning, still standing: its numbers refreshed, not counted again
            alert.message = message
            alert.last_ts = max(alert.last_ts, now)
            report.add(Assessment(*who, f, c, warn, "refreshed"))
            continue
        detail = _evidence(rule, f, shown, now_s)
        if recovery is not None:
            detail["recovery"] = recovery
            if c is not None:
                detail["pessimistic_at"] = datetime.fromtimestamp(c.pessimistic_s, UTC).isoformat()
        event = Event(
            ts=now,
            kind=kind,
            state=EventState.RAISED if warn else EventState.CLEARED,
            severity=Severity.WARNING,
            building=meta.building,
            source=meta.sensor,
            message=message,
            detail=detail,
        )
        try:
            with session.begin_nested():
                touched = fold_event(session, event, gw, now)
                store_cloud_event(session, event, gw, touched)
        except IntegrityError:
            # another process opened the same warning a moment ago: it stands, once
            log.info("trend warning %s opened by another process", key)
            report.add(Assessment(*who, f, c, warn, "refreshed"))
            continue
        if warn:
            RAISED.labels(kind).inc()
            report.add(Assessment(*who, f, c, warn, "raised"))
        else:
            CLEARED.labels(kind).inc()
            report.add(Assessment(*who, f, c, warn, "cleared"))


def evaluate(
    session: Session,
    rules: TrendRules | Iterable[TrendRule],
    now: datetime,
    *,
    catch_up: bool = True,
) -> TrendReport:
    """Judge every sensor with hourly medians of a configured kind in its rule's window,
    and raise, refresh or clear its warning; the caller commits.

    With ``catch_up`` the hourly rollup is brought up to ``now`` first, in the same
    transaction (:func:`run` does it in a transaction of its own, before).
    """
    chosen = _rules(rules)
    report = TrendReport()
    if catch_up:
        report.rollup = rollup.catch_up(session, now, backfill_h=backfill_h(chosen))
        while report.rollup.behind:
            report.rollup = rollup.catch_up(session, now, backfill_h=backfill_h(chosen))
    for rule in chosen:
        _evaluate_rule(session, rule, now, report)
    return report


def backfill_h(rules: Iterable[TrendRule]) -> int:
    """How far back a first rollup cycle goes: the longest window (a week at least)."""
    return max([rollup.DEFAULT_BACKFILL_H, *(math.ceil(r.window_h) + 1 for r in rules)])


def run(
    factory: sessionmaker[Session],
    now: datetime,
    rules: TrendRules | Iterable[TrendRule] = DEFAULT_RULES,
) -> TrendReport:
    """One cycle (the scheduler's step, every 10 minutes): the rollup caught up in a
    transaction of its own (its lock is not held while fitting), then the evaluation in
    another."""
    chosen = _rules(rules)
    with transaction(factory) as session:
        rolled = rollup.catch_up(session, now, backfill_h=backfill_h(chosen))
    while rolled.behind:  # a first cycle: six hours a transaction, the ingest between
        with transaction(factory) as session:
            rolled = rollup.catch_up(session, now, backfill_h=backfill_h(chosen))
    with transaction(factory) as session:
        report = evaluate(session, chosen, now, catch_up=False)
    report.rollup = rolled
    if report.raised or report.cleared:
        log.info(
            "trend warnings: %d evaluated, %d raised, %d cleared",
            report.evaluated,
            report.raised,
            report.cleared,
        )
    return report


__all__ = ["Assessment", "TrendReport", "backfill_h", "evaluate", "run", "verdict"]
