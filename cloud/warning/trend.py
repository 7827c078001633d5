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
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats  # untyped: pyproject.toml's mypy override names it

Direction = Literal["falling", "rising"]
Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DAY_S = 86_400.0
HOUR_S = 3_600.0
CONFIDENCE = 0.90  # the slope's two-sided confidence interval
WORKERS = max(1, min(4, (os.cpu_count() or 1) // 2))  # fit_many: half the cores, at most 4


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


@dataclass(frozen=True, slots=True)
class Fits:
    """Many Theil–Sen fits at once (:func:`fit_many`): one row per series, as :class:`Fit`'s
    fields in arrays. ``ok`` is False where a row had fewer than 3 points or one time
    only (its numbers are NaN)."""

    slope: Array
    low_slope: Array
    high_slope: Array
    pivot_s: Array
    pivot_value: Array
    n: npt.NDArray[np.int64]
    start_s: Array
    end_s: Array
    ok: npt.NDArray[np.bool_]
    confidence: float

    def __len__(self) -> int:
        return int(self.n.size)

    def fit(self, i: int) -> Fit:
        """Row ``i`` as a :class:`Fit` (what :func:`fit` returns for the same points)."""
        if not self.ok[i]:
            raise ValueError(f"row {i} has no fit ({int(self.n[i])} points)")
        slope, pivot_s, pivot_value = (
            float(self.slope[i]),
            float(self.pivot_s[i]),
            float(self.pivot_value[i]),
        )
        end_s = float(self.end_s[i])
        return Fit(
            slope=slope,
            low_slope=float(self.low_slope[i]),
            high_slope=float(self.high_slope[i]),
            intercept=pivot_value + slope * (end_s - pivot_s),
            pivot_s=pivot_s,
            pivot_value=pivot_value,
            n=int(self.n[i]),
            start_s=float(self.start_s[i]),
            end_s=end_s,
            confidence=self.confidence,
        )


def _tie_terms(sorted_rows: Array) -> Array:
    """Per row, Σ k(k-1)(2k+5) over the groups of k equal values (NaN ignored): the
    ties' correction of the variance in Sen (1968) eq. 2.6, as scipy's theilslopes
    sums it over ``_find_repeats``."""
    rows, cols = sorted_rows.shape
    if rows == 0 or cols == 0:
        return np.zeros(rows)
    valid = ~np.isnan(sorted_rows)
    starts = np.ones((rows, cols), dtype=bool)
    starts[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]  # NaN != NaN: never a tie
    labels = np.cumsum(starts.ravel()) - 1  # column 0 starts a group: none spans two rows
    keep = valid.ravel()
    k = np.bincount(labels[keep], minlength=int(labels[-1]) + 1).astype(np.float64)
    group_row = np.empty(k.size, dtype=np.int64)
    group_row[labels] = np.repeat(np.arange(rows), cols)
    terms = np.bincount(group_row, weights=k * (k - 1) * (2 * k + 5), minlength=rows)
    return terms.astype(np.float64)


def fit_many(
    times_s: Array,
    values: Array,
    confidence: float = CONFIDENCE,
    chunk: int = 128,
    workers: int = WORKERS,
) -> Fits:
    """:func:`fit` for every row of ``times_s``/``values`` (2-d, NaN where a row has no
    point), vectorised: the early warning fits 10,000 sensors a cycle.

    The same numbers as :func:`fit` (scipy's ``theilslopes(method="separate")``): per
    row the pairwise slopes of the points at distinct times, their median, and the
    interval's order statistics ``Rl``/``Ru`` from Sen's variance with the ties of times
    and of values. The slopes of ``chunk`` rows at a time are made (rows × n(n-1)/2) and
    sorted per row, in numpy, with no loop over the rows; ``workers`` threads take the
    chunks (each holds three buffers of ``chunk`` × n(n-1)/2 floats: 14 MB for 128 rows
    of a week's 168 hours).
    """
    t_in = np.asarray(times_s, dtype=np.float64)
    y_in = np.asarray(values, dtype=np.float64)
    if t_in.shape != y_in.shape or t_in.ndim != 2:
        raise ValueError("times and values must be 2-d arrays of the same shape")
    rows, cols = t_in.shape
    missing = np.isnan(t_in) | np.isnan(y_in)
    t_in = np.where(missing, np.nan, t_in)
    y_in = np.where(missing, np.nan, y_in)
    order = np.argsort(t_in, axis=1, kind="stable")  # NaN last
    t = np.take_along_axis(t_in, order, axis=1)
    y = np.take_along_axis(y_in, order, axis=1)
    n = (~np.isnan(t)).sum(axis=1).astype(np.int64)
    has = n > 0
    pivot_s = np.full(rows, np.nan)
    pivot_value = np.full(rows, np.nan)
    start_s = np.full(rows, np.nan)
    end_s = np.full(rows, np.nan)
    if has.any():
        pivot_s[has] = np.nanmedian(t[has], axis=1)
        pivot_value[has] = np.nanmedian(y[has], axis=1)
        start_s[has] = t[has, 0]
        end_s[has] = t[has, np.maximum(n[has] - 1, 0)]
    ok = (n >= 3) & (end_s - start_s > 0)
    slope = np.full(rows, np.nan)
    low = np.full(rows, np.nan)
    high = np.full(rows, np.nan)
    # scipy: an alpha above 0.5 means the confidence; z is the lower tail's quantile
    alpha = confidence if confidence <= 0.5 else 1.0 - confidence
    z = float(stats.norm.ppf(alpha / 2.0))
    x_ties = _tie_terms(t)
    y_ties = _tie_terms(np.sort(y, axis=1))
    # buffers reused chunk after chunk (fresh 30 MB arrays would cost their page
    # faults), one set per thread: numpy lets go of the GIL in its loops and its sort
    size = min(chunk, rows) * (cols * (cols - 1) // 2)

    def run(starts: list[int]) -> None:
        buf_a, buf_b, buf_s = np.empty(size), np.empty(size), np.empty(size)
        buf_good = np.empty(size, dtype=bool)
        for lo in starts:
            _chunk(lo, buf_a, buf_b, buf_s, buf_good)

    def _chunk(lo: int, buf_a: Array, buf_b: Array, buf_s: Array, buf_good: BoolArray) -> None:
        sel = np.flatnonzero(ok[lo : lo + chunk]) + lo
        if sel.size == 0:
            return
        width = int(n[sel].max())
        shape = (sel.size, width * (width - 1) // 2)
        dx, dy, slopes = (b[: shape[0] * shape[1]].reshape(shape) for b in (buf_a, buf_b, buf_s))
        good = buf_good[: shape[0] * shape[1]].reshape(shape)
        x = t[sel, :width] - pivot_s[sel, None]  # as fit does: times about the pivot
        yy = y[sel, :width]
        # every pair (i, i + lag) once, a lag at a time: contiguous slices, several times
        # quicker than gathering the pairs by index
        at = 0
        for lag in range(1, width):
            k = width - lag
            np.subtract(x[:, lag:], x[:, :-lag], out=dx[:, at : at + k])
            np.subtract(yy[:, lag:], yy[:, :-lag], out=dy[:, at : at + k])
            at += k
        if not x_ties[sel].any():
            # distinct times (hourly points always are): every pair of points counts,
            # n(n-1)/2 of them, and a pair with a missing point is NaN, which the sort
            # puts after every slope; no mask to make
            np.divide(dy, dx, out=slopes)
            nt = n[sel] * (n[sel] - 1) // 2
        else:
            np.greater(dx, 0.0, out=good)  # False for NaN and for two points at one time
            slopes.fill(np.inf)  # sorted after every slope: rows' counts differ
            np.divide(dy, dx, out=slopes, where=good)
            nt = good.sum(axis=1)
        ny = n[sel].astype(np.float64)
        sigsq = (ny * (ny - 1) * (2 * ny + 5) - x_ties[sel] - y_ties[sel]) / 18.0
        with np.errstate(invalid="ignore"):
            sigma = np.sqrt(sigsq)
        finite = np.isfinite(sigma)
        sig = np.where(finite, sigma, 0.0)
        ru = np.minimum(np.round((nt - z * sig) / 2.0).astype(np.int64), nt - 1)
        rl = np.maximum(np.round((nt + z * sig) / 2.0).astype(np.int64) - 1, 0)
        m1, m2 = (nt - 1) // 2, nt // 2
        # a full sort per row: numpy's SIMD sort of float64 is as quick as a partition
        # for two order statistics, and rows differ in which ones they need (ties)
        slopes.sort(axis=1)
        placed = slopes
        row = np.arange(sel.size)
        med = (placed[row, m1] + placed[row, m2]) / 2.0
        # odd counts: m1 == m2 and the mean of a value with itself is the value
        med = np.where(m1 == m2, placed[row, m1], med)
        lo_s = np.where(finite, placed[row, rl], np.nan)
        hi_s = np.where(finite, placed[row, ru], np.nan)
        slope[sel] = med
        # as fit: min(low, slope) and max(high, slope), NaN kept as Python's min keeps it
        low[sel] = np.where(med < lo_s, med, lo_s)
        high[sel] = np.where(med > hi_s, med, hi_s)

    starts = list(range(0, rows, chunk))
    workers = max(1, min(workers, len(starts)))
    if workers == 1:
        run(starts)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="fit_many") as pool:
            list(pool.map(run, [starts[i::workers] for i in range(workers)]))
    return Fits(
        slope=slope,
        low_slope=low,
        high_slope=high,
        pivot_s=pivot_s,
        pivot_value=pivot_value,
        n=n,
        start_s=start_s,
        end_s=end_s,
        ok=ok,
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
