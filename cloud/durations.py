"""How long alerts took to be acknowledged and resolved: one rule for the daily report
and the analysis API, so the two never disagree.

An alert's time to acknowledge (resolve) is its first such log row's time less its
``opened_at``, over the alerts that had one. The median and p90 interpolate linearly
between ranks, as PostgreSQL's ``percentile_cont`` does: PostgreSQL computes them in the
query; SQLite, which has no percentile aggregate, returns the two columns (one row per
alert, two floats: about 2 MB for 100,000 alerts) and they are interpolated here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from cloud.alerts.lifecycle import Action
from cloud.db import models as m
from cloud.db import seconds_between

ACKNOWLEDGING = (Action.ACKNOWLEDGED.value,)
RESOLVING = (Action.RESOLVED.value, Action.AUTO_RESOLVED.value)


@dataclass(frozen=True, slots=True)
class Durations:
    """Seconds from opening to an action over the alerts that had it (``count``); median
    and p90; None when no alert had the action."""

    count: int
    median_s: float | None
    p90_s: float | None


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p`` quantile (0-1) of sorted values, linear between the two nearest ranks."""
    if not ordered:
        raise ValueError("no values")
    pos = p * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarise(values: Iterable[float | None]) -> Durations:
    """Count, median and p90 of the values that are there."""
    ordered = sorted(float(v) for v in values if v is not None)
    if not ordered:
        return Durations(0, None, None)
    return Durations(len(ordered), percentile(ordered, 0.5), percentile(ordered, 0.9))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def time_to_act(session: Session, which: ColumnElement[bool]) -> tuple[Durations, Durations]:
    """Time to acknowledge and time to resolve over the alerts ``which`` selects (a
    condition on :class:`cloud.db.models.Alert`: the caller's scope and range), in one
    query."""
    firsts = (
        select(
            m.Alert.opened_at.label("opened_at"),
            func.min(
                case((m.AlertTransition.action.in_(ACKNOWLEDGING), m.AlertTransition.at))
            ).label("acked_at"),
            func.min(case((m.AlertTransition.action.in_(RESOLVING), m.AlertTransition.at))).label(
                "resolved_at"
            ),
        )
        .join(m.AlertTransition, m.AlertTransition.alert_id == m.Alert.id)
        .where(which, m.AlertTransition.action.in_(ACKNOWLEDGING + RESOLVING))
        .group_by(m.Alert.id, m.Alert.opened_at)
        .subquery()
    )
    ack_s = seconds_between(session, firsts.c.opened_at, firsts.c.acked_at)
    resolve_s = seconds_between(session, firsts.c.opened_at, firsts.c.resolved_at)
    if session.get_bind().dialect.name == "postgresql":
        row = session.execute(
            select(
                *(
                    agg
                    for col in (ack_s, resolve_s)
                    for agg in (
                        func.count(col),
                        func.percentile_cont(0.5).within_group(col),
                        func.percentile_cont(0.9).within_group(col),
                    )
                )
            )
        ).one()
        return (
            Durations(row[0], _float(row[1]), _float(row[2])),
            Durations(row[3], _float(row[4]), _float(row[5])),
        )
    rows = session.execute(select(ack_s, resolve_s)).all()
    return summarise(r[0] for r in rows), summarise(r[1] for r in rows)
