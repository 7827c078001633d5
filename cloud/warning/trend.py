"""Trend to threshold, pure (no database): a robust line through a sensor's recent
readings and when it, and its pessimistic bound, cross a limit.

The fit is Theil–Sen (:func:`scipy.stats.theilslopes`): the median of the pairwise
slopes, so a few spikes or a burst move it little, where an ordinary least-squares line
(what a plain ``predict_linear`` does) follows them. Readings are first reduced to
hourly medians (:func:`downsample`): 7 days of 1-minute readings become ~170 points,
and a burst within one hour counts once.

Times are POSIX seconds (floats); the fit keeps them relative to a pivot, so slopes of a
few thousandths per day lose nothing to the size of the epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats  # untyped: pyproject.toml's mypy override names it

Direction = Literal["falling", "rising"]
Array = npt.NDArray[np.float64]

DAY_S = 86_400.0
HOUR_S = 3_600.0
CONFIDENCE = 0.90  # the slope's two-sided confidence interval


@dataclass(frozen=True, slots=True)
class Fit:
    """A Theil–Sen line ``value(t) = pivot_value + slope * (t - pivot_s)``.

    ``slope``, ``low_slope`` and ``high_slope`` are per second; the bounds are the
    ``confidence`` interval of the slope, and the bound lines pass through the same
    pivot (the median time and median value: the central line passes through it too).
    ``intercept`` is the central line's value at ``end_s``, the last point's time.
    """

    slope: float
    low_slope: float
    high_slope: float
    intercept: float
    pivot_s: float
    pivot_value: float
    n: int
    start_s: float
    end_s: float
    confidence: float

    @property
    def window_s(self) -> float:
        return self.end_s - self.start_s

    def value_at(self, t_s: float, slope: float | None = None) -> float:
        """The line's value at ``t_s`` (with ``slope``: the line of that slope through
        the pivot, e.g. a confidence bound)."""
        return self.pivot_value + (self.slope if slope is None else slope) * (t_s - self.pivot_s)

    def per_day(self, slope: float) -> float:
        return slope * DAY_S


@dataclass(frozen=True, slots=True)
class Crossing:
    """When the line reaches the limit. ``expected_s`` is the central line's time (None
    when it moves away from the limit or stays flat); ``pessimistic_s`` the soonest of
    the confidence bounds'. Either is ``now_s`` when that line is past the limit already."""

    expected_s: float | None
    pessimistic_s: float
    current: float  # the central line's value at now
    already: bool  # the central line is past the limit at now


def downsample(times_s: Array, values: Array, bucket_s: float = HOUR_S) -> tuple[Array, Array]:
    """Median time and median value per ``bucket_s`` bucket, in time order."""
    times_s = np.asarray(times_s, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if times_s.shape != values.shape or times_s.ndim != 1:
        raise ValueError("times and values must be 1-d arrays of the same length")
    if times_s.size == 0:
        return times_s, values
    keep = np.isfinite(times_s) & np.isfinite(values)
    times_s, values = times_s[keep], values[keep]
    order = np.argsort(times_s, kind="stable")
    times_s, values = times_s[order], values[order]
    buckets = np.floor(times_s / bucket_s)
    # the start of each run of one bucket (sorted, so each bucket is one run)
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    ends = np.r_[starts[1:], times_s.size]
    t_out = np.array([np.median(times_s[a:b]) for a, b in zip(starts, ends, strict=True)])
    v_out = np.array([np.median(values[a:b]) for a, b in zip(starts, ends, strict=True)])
    return t_out, v_out


def fit(times_s: Array, values: Array, confidence: float = CONFIDENCE) -> Fit:
    """The Theil–Sen line through the points and its slope's ``confidence`` interval.

    Needs at least 3 points at 2 distinct times (ValueError otherwise).
    """
    t = np.asarray(times_s, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1 or t.size < 3:
        raise ValueError("a fit needs at least 3 points (1-d arrays of the same length)")
    if float(t.max() - t.min()) <= 0:
        raise ValueError("a fit needs points at more than one time")
    pivot_s = float(np.median(t))
    x = t - pivot_s
    result = stats.theilslopes(y, x, alpha=confidence, method="separate")
    slope = float(result.slope)
    low, high = float(result.low_slope), float(result.high_slope)
    pivot_value = float(np.median(y))
    end_s = float(t.max())
    return Fit(
        slope=slope,
        low_slope=min(low, slope),
        high_slope=max(high, slope),
        intercept=pivot_value + slope * (end_s - pivot_s),
        pivot_s=pivot_s,
        pivot_value=pivot_value,
        n=int(t.size),
        start_s=float(t.min()),
        end_s=end_s,
        confidence=confidence,
    )


def _line_crossing(
    value_now: float, slope: float, limit: float, direction: Direction, now_s: float
) -> float | None:
    """When a line at ``value_now`` (at ``now_s``) with ``slope`` reaches ``limit``."""
    past = value_now <= limit if direction == "falling" else value_now >= limit
    if past:
        return now_s
    towards = slope < 0 if direction == "falling" else slope > 0
    if not towards:
        return None
    t = now_s + (limit - value_now) / slope
    return t if math.isfinite(t) else None


def crossing(fit: Fit, limit: float, direction: Direction, now_s: float) -> Crossing | None:
    """When ``fit`` crosses ``limit`` going ``direction``; None when even the pessimistic
    bound never reaches it (the limit is not in the trend's way)."""
    # falling: the lowest slope comes down soonest; rising: the highest goes up soonest
    bound = fit.low_slope if direction == "falling" else fit.high_slope
    pessimistic = _line_crossing(fit.value_at(now_s, bound), bound, limit, direction, now_s)
    if pessimistic is None:
        return None
    current = fit.value_at(now_s)
    expected = _line_crossing(current, fit.slope, limit, direction, now_s)
    return Crossing(
        expected_s=expected,
        pessimistic_s=pessimistic,
        current=current,
        already=expected == now_s,
    )


def linear_crossing(
    times_s: Array, values: Array, limit: float, direction: Direction, now_s: float
) -> float | None:
    """The crossing an ordinary least-squares line predicts (``predict_linear``): the
    reference the tests and benchmark hold Theil–Sen against, not used for warnings."""
    t = np.asarray(times_s, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    pivot = float(np.median(t))
    slope, at_pivot = np.polyfit(t - pivot, y, 1)
    value_now = float(at_pivot + slope * (now_s - pivot))
    return _line_crossing(value_now, float(slope), limit, direction, now_s)
