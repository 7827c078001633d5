"""Reconnect delays grow exponentially, with jitter, up to a ceiling."""

from __future__ import annotations

import itertools
import random

from edge.uplink import backoff_delays


def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    delays = list(itertools.islice(backoff_delays(0.5, 8.0, random.Random(1)), 10))
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jittered, not in lock-step


def test_two_gateways_do_not_reconnect_in_step() -> None:
    a = list(itertools.islice(backoff_delays(1, 60, random.Random(1)), 6))
    b = list(itertools.islice(backoff_delays(1, 60, random.Random(2)), 6))
    assert a != b
