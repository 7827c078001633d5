"""The pure trend: Theil–Sen with its interval against the spikes that pull a
least-squares line (a plain ``predict_linear``) off."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from cloud.warning.trend import DAY_S, crossing, downsample, fit, fit_many, linear_crossing
from tests.cloud.warning.series import LIMIT, START, hourly, true_crossing

LEVEL, RATE = 0.29, -0.005  # MPa, MPa/day: crosses 0.07 on day 44
SPIKES = {10.5: 0.0, 25.25: 0.6, 40.6: 0.0}  # two drops to nothing, one glitch up


def test_decay_with_spikes_crosses_near_the_truth_and_ols_is_pulled_off() -> None:
    series = hourly(48, LEVEL, RATE, spikes=SPIKES)
    truth = true_crossing(LEVEL, RATE).timestamp()
    now = START + timedelta(days=41)  # the spike of day 40.6 is in the window's last hours
    t, v = series.until(now, 72)
    ht, hv = downsample(t, v)
    f = fit(ht, hv)
    assert f.n == 72
    assert f.low_slope < f.slope < f.high_slope
    assert f.per_day(f.slope) == pytest.approx(RATE, abs=0.0008)
    c = crossing(f, LIMIT, "falling", now.timestamp())
    assert c is not None and c.expected_s is not None and not c.already
    # Theil–Sen: within 6 h of the true crossing; its pessimistic bound comes earlier
    assert abs(c.expected_s - truth) < 6 * 3600
    assert c.pessimistic_s < c.expected_s
    # least squares on the same readings: the one spike drags it more than a day early
    ols = linear_crossing(t, v, LIMIT, "falling", now.timestamp())
    assert ols is not None
    assert truth - ols > DAY_S
    assert abs(ols - truth) > 4 * abs(c.expected_s - truth)


def test_a_steady_series_with_a_burst_of_drops_makes_ols_fire_but_not_theil_sen() -> None:
    series = hourly(31, 0.10, 0.0, spikes={19.85: 0.0, 19.9: 0.0, 19.95: 0.0}, seed=3)
    now = START + timedelta(days=20)
    t, v = series.until(now, 72)
    f = fit(*downsample(t, v))
    c = crossing(f, LIMIT, "falling", now.timestamp())
    # the robust pessimistic bound is weeks away; least squares says under 72 h
    assert c is None or c.pessimistic_s - now.timestamp() > 10 * DAY_S
    ols = linear_crossing(t, v, LIMIT, "falling", now.timestamp())
    assert ols is not None and ols - now.timestamp() < 3 * DAY_S


def test_rising_direction_and_already_past() -> None:
    t = np.arange(48, dtype=np.float64) * 3600
    v = 20.0 + t / DAY_S  # +1 per day
    f = fit(t, v)
    c = crossing(f, 25.0, "rising", float(t[-1]))
    assert c is not None and c.expected_s is not None
    assert c.expected_s - t[-1] == pytest.approx(3.04 * DAY_S, rel=0.02)
    assert crossing(f, 18.0, "falling", float(t[-1])) is None  # moving away from it
    past = crossing(f, 21.0, "rising", float(t[-1]))
    assert past is not None and past.already and past.pessimistic_s == t[-1]


def test_downsample_takes_hourly_medians() -> None:
    t = np.arange(0, 7 * 24 * 3600, 60, dtype=np.float64)  # 7 days of 1-minute readings
    v = np.full(t.size, 0.3)
    v[::97] = 5.0  # a burst now and then: the median ignores it
    ht, hv = downsample(t, v)
    assert ht.size == 168
    assert np.allclose(hv, 0.3)
    assert np.all(np.diff(ht) > 0)


def test_fit_refuses_too_few_points() -> None:
    with pytest.raises(ValueError, match="3 points"):
        fit(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="more than one time"):
        fit(np.zeros(5), np.arange(5.0))


@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.8])
def test_fit_many_equals_fit_row_by_row_on_random_series(confidence: float) -> None:
    """The vectorised fit gives scipy's numbers (via fit) for every row: gaps, tied
    values (readings to 0.001), rising and falling, rows of 3 points and of none."""
    rng = np.random.default_rng(11)
    rows, cols = 40, 96
    hours = np.arange(cols, dtype=np.float64)
    times = 1.8e9 + hours[None, :] * 3600 + rng.uniform(0, 3599, (rows, cols))
    slopes = rng.normal(0, 0.01, (rows, 1))
    values = np.round(0.3 + slopes * hours[None, :] / 24 + rng.normal(0, 0.004, (rows, cols)), 3)
    times[rng.random((rows, cols)) < 0.15] = np.nan  # missing hours
    times[0, 3:] = np.nan  # exactly 3 points
    times[1, 2:] = np.nan  # too few
    times[2, :] = np.nan  # none
    values[3, :] = 0.25  # flat: every value tied
    times[4, 11] = times[4, 10] = 1.8e9 + 10 * 3600  # two points at one time (x ties)
    fits = fit_many(times, values, confidence, chunk=7)  # chunks of odd size
    assert len(fits) == rows
    assert not fits.ok[1] and not fits.ok[2] and fits.ok[0]
    compared = 0
    for i in range(rows):
        keep = ~np.isnan(times[i])
        if keep.sum() < 3:
            continue
        want = fit(times[i][keep], values[i][keep], confidence)
        got = fits.fit(i)
        for name in ("slope", "low_slope", "high_slope", "pivot_s", "pivot_value", "intercept"):
            assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-12, abs=1e-18)
        assert (got.n, got.start_s, got.end_s) == (want.n, want.start_s, want.end_s)
        compared += 1
    assert compared == rows - 2
    with pytest.raises(ValueError, match="no fit"):
        fits.fit(2)


def test_fit_many_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="2-d"):
        fit_many(np.zeros((2, 3)), np.zeros((3, 2)))
    empty = fit_many(np.zeros((0, 5)), np.zeros((0, 5)))
    assert len(empty) == 0
