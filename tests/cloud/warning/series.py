"""Generated hourly hydrant-pressure histories: a line, Gaussian noise, and spikes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

START = datetime(2026, 3, 1, tzinfo=UTC)
LIMIT = 0.07  # GB 50974-2014 §5.2.2, residential


@dataclass(frozen=True)
class Series:
    times: list[datetime]
    values: np.ndarray

    @property
    def times_s(self) -> np.ndarray:
        return np.array([t.timestamp() for t in self.times], dtype=np.float64)

    def until(self, now: datetime, hours: float) -> tuple[np.ndarray, np.ndarray]:
        """The (times_s, values) in (now - hours, now]."""
        t = self.times_s
        keep = (t > (now - timedelta(hours=hours)).timestamp()) & (t <= now.timestamp())
        return t[keep], self.values[keep]


def hourly(
    days: float,
    level: float,
    per_day: float = 0.0,
    sd: float = 0.003,
    spikes: dict[float, float] | None = None,
    seed: int = 7,
    start: datetime = START,
    step_at: tuple[float, float] | None = None,
) -> Series:
    """``level + per_day * day + noise`` every hour for ``days``; ``spikes`` maps a time
    in days to the value read then; ``step_at`` = (day, value): from that day on the
    pressure is restored to ``value`` (a repaired pump), flat."""
    rng = np.random.default_rng(seed)
    n = int(days * 24)
    day = np.arange(n) / 24.0
    values = level + per_day * day + rng.normal(0.0, sd, n)
    if step_at is not None:
        at, restored = step_at
        after = day >= at
        values[after] = restored + rng.normal(0.0, sd, int(after.sum()))
    for when, value in (spikes or {}).items():
        values[round(when * 24)] = value
    return Series([start + timedelta(hours=h) for h in range(n)], values)


def true_crossing(level: float, per_day: float, limit: float = LIMIT) -> datetime:
    return START + timedelta(days=(limit - level) / per_day)


def hovering(
    hours: int, start: datetime, tau_h: float = 116.0, sd: float = 0.002, seed: int = 3
) -> Series:
    """Hourly readings easing down towards the limit, ``LIMIT + 0.05 e^(-t/tau)`` plus
    noise: the line through the last days keeps pointing at the limit about ``tau`` hours
    ahead, so its pessimistic crossing hovers around a 72-hour horizon."""
    rng = np.random.default_rng(seed)
    h = np.arange(hours, dtype=np.float64)
    values = LIMIT + 0.05 * np.exp(-h / tau_h) + rng.normal(0.0, sd, hours)
    return Series([start + timedelta(hours=int(i)) for i in range(hours)], values)
