"""Trend-to-threshold warnings (预警监测) over the stored readings.

For each sensor with readings of a configured kind in a rule's window: its hourly
medians are fitted (:mod:`cloud.warning.trend`); when the pessimistic bound of the fit
crosses the limit within the rule's horizon a ``<kind>_trend`` warning is raised at the
sensor's place, and cleared once it no longer does. A warning is an ordinary alert: the
event is folded by :func:`cloud.alerts.fold_event` (one live alert per key, escalation,
the console, auto-resolve on the clear), and stored as an event row whose payload keeps
the evidence (the numbers, the window, the fit and its interval).

Several processes may evaluate at the same moment: a live warning is found (locked) and
refreshed, never opened twice; two opening it at once collide on the alerts' unique live
key, and the loser's savepoint is undone (its evaluation counts it as refreshed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.alerts import alert_key, fold_event
from cloud.db import models as m
from cloud.db import transaction
from cloud.warning.config import DEFAULT_RULES, TrendRule, TrendRules
from cloud.warning.trend import HOUR_S, Crossing, Fit, crossing, downsample, fit
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


def _rules(rules: TrendRules | Iterable[TrendRule]) -> tuple[TrendRule, ...]:
    return rules.rules if isinstance(rules, TrendRules) else tuple(rules)


def _number(values: dict[str, Any], name: str) -> float | None:
    value = values.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


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
    }
    if c is not None:
        detail["pessimistic_at"] = datetime.fromtimestamp(c.pessimistic_s, UTC).isoformat()
        if c.expected_s is not None:
            detail["expected_at"] = datetime.fromtimestamp(c.expected_s, UTC).isoformat()
    return detail


def _message(sensor: str, rule: TrendRule, f: Fit, c: Crossing | None, now_s: float) -> str:
    """The evidence in one line of Chinese (an alert message: no newlines, ≤ 500)."""
    u = rule.unit
    way = "跌破" if rule.direction == "falling" else "超过"
    pct = round(f.confidence * 100)
    head = (
        f"{rule.kind} 趋势预警：{sensor} {rule.field} 拟合当前 {f.value_at(now_s):.4f}{u}，"
        f"斜率 {f.per_day(f.slope):+.4f}{u}/天（{pct}% 区间 {f.per_day(f.low_slope):+.4f}"
        f"～{f.per_day(f.high_slope):+.4f}），Theil–Sen 拟合 {rule.window_h:g} 小时窗口 "
        f"{f.n} 个小时中位点（{_local(f.start_s)} 至 {_local(f.end_s)}）；"
        f"限值 {rule.limit:g}{u}" + (f"（{rule.source}）" if rule.source else "")
    )
    if c is None:
        return head + f"；{rule.horizon_h:g} 小时内按悲观估计也不会{way}限值，预警解除"
    expected = f"预计 {_local(c.expected_s)} {way}" if c.expected_s is not None else "中心趋势不达"
    tail = f"；{expected}，最早 {_local(c.pessimistic_s)}（北京时间，按{pct}%区间悲观估计）"
    if c.already:
        tail = f"；当前拟合值已{way}限值" + tail
    text = head + tail
    return text[:500]


def _series(
    session: Session, gateway: str, sensor: str, rule: TrendRule, since: datetime, now: datetime
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The sensor's readings of the rule's kind in the window (ix_readings_device_ts),
    as POSIX seconds and values, and the building of the latest."""
    rows = session.execute(
        select(m.ReadingRow.ts, m.ReadingRow.values, m.ReadingRow.building)
        .where(
            m.ReadingRow.gateway == gateway,
            m.ReadingRow.sensor == sensor,
            m.ReadingRow.ts > since,
            m.ReadingRow.ts <= now,
            m.ReadingRow.kind == rule.kind,
        )
        .order_by(m.ReadingRow.ts)
    ).all()
    times: list[float] = []
    values: list[float] = []
    building: str | None = None
    for ts, vals, bld in rows:
        value = _number(vals or {}, rule.field)
        if value is None:
            continue
        times.append(ts.timestamp())
        values.append(value)
        building = bld
    return np.array(times, dtype=np.float64), np.array(values, dtype=np.float64), building


def _devices(session: Session, rule: TrendRule, since: datetime, now: datetime) -> list[Any]:
    """(gateway, sensor) with readings of the rule's kind in the window."""
    return list(
        session.execute(
            select(m.ReadingRow.gateway, m.ReadingRow.sensor)
            .where(
                m.ReadingRow.ts > since,
                m.ReadingRow.ts <= now,
                m.ReadingRow.kind == rule.kind,
            )
            .distinct()
            .order_by(m.ReadingRow.gateway, m.ReadingRow.sensor)
        ).all()
    )


def _live_alert(session: Session, key: str) -> m.Alert | None:
    alert = session.scalars(
        select(m.Alert)
        .where(m.Alert.key == key, m.Alert.active.is_(True))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    return alert if alert is not None and alert.active else None


def _store_event(session: Session, event: Event, gw: m.Gateway, alert: m.Alert | None) -> None:
    """The raise or clear as an event row: the alert's timeline keeps its evidence."""
    session.add(
        m.EventRow(
            id=event.id,
            gateway=gw.id,
            seq=None,
            ts=event.ts,
            received_at=event.ts,
            community=gw.community,
            compound=gw.compound,
            building=event.building,
            kind=event.kind,
            state=event.state.value,
            severity=int(event.severity),
            source=event.source,
            zone=event.zone,
            message=event.message,
            payload=event.model_dump(mode="json", by_alias=True),
            alert_id=alert.id if alert is not None else None,
        )
    )


def _assess(
    session: Session, rule: TrendRule, gateway: str, sensor: str, now: datetime
) -> Assessment:
    since = now - timedelta(hours=rule.window_h)
    now_s = now.timestamp()
    times, values, building = _series(session, gateway, sensor, rule, since, now)
    hours_t, hours_v = downsample(times, values, HOUR_S)
    EVALUATED.labels(rule.kind).inc()

    def done(f: Fit | None, c: Crossing | None, warn: bool, action: str) -> Assessment:
        return Assessment(gateway, sensor, rule, int(hours_t.size), f, c, warn, action)

    if hours_t.size < rule.min_points or float(hours_t[-1] - hours_t[0]) <= 0:
        return done(None, None, False, "insufficient")
    f = fit(hours_t, hours_v, rule.confidence)
    c = crossing(f, rule.limit, rule.direction, now_s)
    warn = c is not None and c.pessimistic_s - now_s <= rule.horizon_h * HOUR_S
    gw = session.get(m.Gateway, gateway)
    if gw is None:
        return done(f, c, warn, "skipped")
    kind = rule.alert_kind
    key = alert_key(kind, gw.community, gw.compound, building, None, sensor)
    alert = _live_alert(session, key)
    shown = c if warn else None
    message = _message(sensor, rule, f, shown, now_s)
    if warn and alert is not None:
        # the same warning, still standing: its numbers refreshed, not counted again
        alert.message = message
        alert.last_ts = max(alert.last_ts, now)
        return done(f, c, warn, "refreshed")
    if not warn and alert is None:
        return done(f, c, warn, "quiet")
    event = Event(
        ts=now,
        kind=kind,
        state=EventState.RAISED if warn else EventState.CLEARED,
        severity=Severity.WARNING,
        building=building,
        source=sensor,
        message=message,
        detail=_evidence(rule, f, shown, now_s),
    )
    try:
        with session.begin_nested():
            touched = fold_event(session, event, gw, now)
            _store_event(session, event, gw, touched)
    except IntegrityError:
        # another process opened the same warning a moment ago: it stands, once
        log.info("trend warning %s opened by another process", key)
        return done(f, c, warn, "refreshed")
    if warn:
        RAISED.labels(kind).inc()
        return done(f, c, warn, "raised")
    CLEARED.labels(kind).inc()
    return done(f, c, warn, "cleared")


def evaluate(
    session: Session, rules: TrendRules | Iterable[TrendRule], now: datetime
) -> TrendReport:
    """Judge every sensor with readings of a configured kind in its rule's window, and
    raise, refresh or clear its warning; the caller commits."""
    report = TrendReport()
    for rule in _rules(rules):
        since = now - timedelta(hours=rule.window_h)
        for gateway, sensor in _devices(session, rule, since, now):
            a = _assess(session, rule, gateway, sensor, now)
            report.assessments.append(a)
            report.evaluated += 1
            if a.action == "raised":
                report.raised += 1
            elif a.action == "refreshed":
                report.refreshed += 1
            elif a.action == "cleared":
                report.cleared += 1
            elif a.action == "insufficient":
                report.insufficient += 1
    return report


def run(
    factory: sessionmaker[Session],
    now: datetime,
    rules: TrendRules | Iterable[TrendRule] = DEFAULT_RULES,
) -> TrendReport:
    """One evaluation in its own transaction (the scheduler's step)."""
    with transaction(factory) as session:
        report = evaluate(session, rules, now)
    if report.raised or report.cleared:
        log.info(
            "trend warnings: %d evaluated, %d raised, %d cleared",
            report.evaluated,
            report.raised,
            report.cleared,
        )
    return report


__all__ = ["Assessment", "TrendReport", "evaluate", "run"]
