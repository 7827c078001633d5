"""The scheduler's steps: each at its own interval on the injected time, a failing one
logged and counted without starving the others, and a step that changed alerts wakes
the live consoles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from cloud.api.notify import ChangeNotifier
from cloud.app import CloudService, Scheduler, Step
from cloud.clock import ManualClock
from cloud.settings import Settings

T0 = datetime(2026, 3, 11, 8, 0, tzinfo=UTC)


class CountingNotifier(ChangeNotifier):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def notify(self) -> None:
        self.calls += 1
        super().notify()


def _failures(step: str) -> float:
    value = REGISTRY.get_sample_value("mb_scheduler_step_failures_total", {"step": step})
    return value or 0.0


def test_steps_run_at_their_intervals_and_a_failure_starves_nothing(sqlite_cloud_url):
    svc = CloudService(
        Settings(database_url=sqlite_cloud_url),
        clock=ManualClock(T0),
        ingest=False,
        scheduler=False,
    )
    try:
        runs: list[tuple[str, datetime]] = []

        def fine(name: str, changed: bool = False):
            def run(now: datetime) -> bool:
                runs.append((name, now))
                return changed

            return run

        def broken(now: datetime) -> bool:
            runs.append(("broken", now))
            raise RuntimeError("boom")

        scheduler = Scheduler(svc)
        assert [s.name for s in scheduler.steps][:3] == ["escalation", "rechecks", "appeals"]
        scheduler.steps = [
            Step("every_tick", timedelta(0), fine("every_tick")),
            Step("broken", timedelta(minutes=10), broken),
            Step("hourly", timedelta(hours=1), fine("hourly", changed=True)),
        ]
        before = _failures("broken")
        svc.state.notifier = counting = CountingNotifier()
        for minutes in (0, 1, 9, 10, 59, 60):
            scheduler.tick(T0 + timedelta(minutes=minutes))
        names = [name for name, _ in runs]
        assert names.count("every_tick") == 6
        # the broken step ran at 0, 10 and 59 minutes (not at 1, 9 or 60): it waits its
        # interval after failing, as after succeeding
        assert [now for name, now in runs if name == "broken"] == [
            T0,
            T0 + timedelta(minutes=10),
            T0 + timedelta(minutes=59),
        ]
        assert _failures("broken") - before == 3
        # the hourly step ran at 0 and 60, after the broken one had failed in the same tick
        assert [now for name, now in runs if name == "hourly"] == [T0, T0 + timedelta(hours=1)]
        # only the step that changed alerts woke the consoles: once per run of it
        assert counting.calls == 2
    finally:
        svc.engine.dispose()


def test_a_clock_set_back_does_not_hold_the_steps(sqlite_cloud_url):
    svc = CloudService(
        Settings(database_url=sqlite_cloud_url),
        clock=ManualClock(T0),
        ingest=False,
        scheduler=False,
    )
    try:
        ran: list[datetime] = []
        scheduler = Scheduler(svc)

        def every_tick(now: datetime) -> bool:
            ran.append(now)
            return False

        scheduler.steps = [Step("every_tick", timedelta(0), every_tick)]
        scheduler.tick(T0)
        scheduler.tick(T0 - timedelta(minutes=5))  # NTP stepped the clock back
        scheduler.tick(T0 - timedelta(minutes=5, seconds=-1))
        assert ran == [T0, T0 - timedelta(minutes=5), T0 - timedelta(minutes=5, seconds=-1)]
    finally:
        svc.engine.dispose()
