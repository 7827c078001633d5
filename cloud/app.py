"""Wire the cloud together: migrations, site, API, ingest and the escalation scheduler.

Several processes may run this side by side: the ingest is shared through the MQTT 5
shared subscription, the scheduler's steps are guarded rows, and the API is stateless.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cloud import auth, escalation, fusion, retention, warning, work_orders
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.appeals import scheduling as appeal_steps
from cloud.awareness import handover, liveness_sweep, shifts
from cloud.awareness import schedule as report_schedule
from cloud.clock import Clock, system_clock
from cloud.commands import MqttCommandSender
from cloud.console import mount_console
from cloud.console.i18n import DEFAULT_LANGUAGE, catalogue
from cloud.db import make_engine, partitions, read_only, session_factory, transaction, upgrade
from cloud.db import models as m
from cloud.errors import Conflict
from cloud.ingest import BatchResult, IngestWorker
from cloud.model_registry import step as rollout_step
from cloud.permissions import Role
from cloud.response import Responder, load_response
from cloud.settings import Settings
from cloud.site_sync import import_gateway_passwords, sync_site
from cloud.warning import baseline, hotspots
from microbrain.site import Site, SiteError
from microbrain.site.loader import site_sources

log = logging.getLogger(__name__)

STEP_FAILURES = Counter(
    "mb_scheduler_step_failures_total", "scheduler steps that raised, by step", ["step"]
)


@dataclass(frozen=True, slots=True)
class Step:
    """One periodic job of the scheduler: ``run(now)`` returns whether it changed alerts
    (the live consoles and the responder are then woken). A step that fails is logged and
    waits its interval like one that succeeded: a broken step never starves the others."""

    name: str
    every: timedelta
    run: Callable[[datetime], bool]


class Scheduler:
    """Runs the cloud's periodic steps on one thread (:func:`steps_of` lists them with
    their intervals). Every step is a guarded write, so several processes may run the
    same steps side by side."""

    def __init__(self, service: CloudService) -> None:
        self.service = service
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.steps = steps_of(service)
        self._last: dict[str, datetime] = {}

    def start(self) -> None:
        self._thread.start()

    def tick(self, now: datetime) -> None:
        """Run every step that is due at ``now``."""
        svc = self.service
        for step in self.steps:
            last = self._last.get(step.name)
            # due once its interval has passed, or when the clock was set back (else an
            # every-tick step would wait for the clock to catch up with its last run)
            if last is not None and timedelta(0) <= now - last < step.every:
                continue
            self._last[step.name] = now
            try:
                changed = step.run(now)
            except Exception:
                STEP_FAILURES.labels(step.name).inc()
                log.exception("scheduler step %s failed; retrying in %s", step.name, step.every)
                continue
            if changed:
                svc.state.notifier.notify()
                if svc.responder is not None:
                    svc.responder.wake()

    def _run(self) -> None:
        while not self._stop.wait(self.service.settings.scheduler_interval_s):
            self.tick(self.service.clock())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def steps_of(svc: CloudService) -> list[Step]:
    """The scheduler's steps, in the order they run."""
    factory, settings = svc.factory, svc.settings

    def escalate(now: datetime) -> bool:
        return bool(escalation.run_due(factory, now))

    def rechecks(now: datetime) -> bool:
        with transaction(factory) as s:
            expired = work_orders.expire_rechecks(s, now=now, timeout_s=settings.recheck_timeout_s)
        return bool(expired)

    def appeals_due(now: datetime) -> bool:
        appeal_steps.escalate_due(factory, now)  # residents' appeals past due
        return False

    def trends(now: datetime) -> bool:
        report = warning.run(factory, now, svc.trend_rules)
        return bool(report.raised or report.cleared)

    def baselines(now: datetime) -> bool:
        report = baseline.run(factory, now)
        return bool(report.raised or report.cleared)

    def liveness(now: datetime) -> bool:
        return liveness_sweep.run(factory, now).alerts_changed

    def handovers(now: datetime) -> bool:
        handover.run(factory, now, svc.awareness)
        return False  # a handover is a record, not a change to any alert

    def daily_reports(now: datetime) -> bool:
        # about 1-2 s a desk once a day, on this thread: escalations wait that long then
        report_schedule.run(factory, now, svc.awareness)
        return False

    def hotspot_items(now: datetime) -> bool:
        hotspots.run(factory, now)
        return False  # governance items are not alerts: nothing live to wake

    def model_rollouts(now: datetime) -> bool:
        rollout_step.run_step(factory, svc.state.commands, now, settings.model_resend_s)
        return False  # installs and their states are not alerts

    def reading_partitions(now: datetime) -> bool:
        with transaction(factory) as s:
            partitions.ensure_months(s.connection(), now)  # PostgreSQL only
        return False

    def prune(now: datetime) -> bool:
        with transaction(factory) as s:
            keep_days = settings.reading_retention_days
            retention.prune_readings(s, now=now, keep_days=keep_days)
            warning.prune_rollups(s, now=now, keep_days=keep_days)
            retention.prune_dead_letters(s, now=now, keep_days=keep_days)
            retention.prune_tokens(s, now=now)
        appeal_steps.tidy(factory, now)
        return False

    return [
        Step("escalation", timedelta(0), escalate),
        Step("rechecks", timedelta(0), rechecks),
        Step("appeals", timedelta(0), appeals_due),
        Step("fusion", timedelta(0), svc.fusion),  # related alerts linked as they come
        # canary health, promotion, sends and resends of model installs (cloud/model_registry)
        Step("rollouts", timedelta(seconds=1), model_rollouts),
        # no coarser than the shortest heartbeat: debouncing is only as fine as this
        Step("liveness", timedelta(seconds=30), liveness),
        Step("trend_warnings", timedelta(minutes=10), trends),  # readings move slowly
        # the baseline's window ends at the last whole hour: more often gains nothing
        Step("baseline_warnings", timedelta(hours=1), baselines),
        Step("hotspots", timedelta(minutes=5), hotspot_items),
        Step("handover", timedelta(minutes=1), handovers),  # 交接班 at each shift time
        Step("daily_report", timedelta(minutes=1), daily_reports),  # at the report hour
        # the coming months' readings partitions exist before their first reading
        Step("reading_partitions", timedelta(hours=6), reading_partitions),
        Step("retention", timedelta(hours=1), prune),
    ]


class CloudService:
    """The whole cloud in one process; ``app`` is the ASGI app to serve."""

    def __init__(
        self,
        settings: Settings,
        *,
        site: Site | None = None,
        site_path: str | Path | None = None,
        clock: Clock = system_clock,
        ingest: bool = True,
        scheduler: bool = True,
    ) -> None:
        self.settings = settings
        self.site = site
        self.site_path = site_path  # the file ``site`` was loaded from: its lines are kept
        self.clock = clock
        self.engine = make_engine(settings.database_url)
        self.factory = session_factory(self.engine)
        self.state = ApiState(
            settings=settings,
            factory=self.factory,
            clock=clock,
            readers=session_factory(read_only(self.engine)),
        )
        self.worker: IngestWorker | None = None
        self.scheduler: Scheduler | None = None
        self.responder: Responder | None = None
        # the playbooks are read here, at the door: a broken file or a channel whose secret
        # is not in the environment stops the start with every problem named
        self.response = (
            load_response(
                settings.playbooks,
                site=site,
                environ=os.environ,
                kind_name=catalogue(DEFAULT_LANGUAGE).kind,
            )
            if settings.playbooks is not None
            else None
        )
        # the desks, shifts and report hour; the fusion rules: read at the door like the
        # playbooks, so a broken file stops the start with its lines named
        self.awareness = shifts.load_awareness(settings.awareness, site)
        self.trend_rules = warning.load_rules(settings.warning_rules)
        fusion_file = settings.fusion_rules or (
            fusion.SHIPPED_RULES if fusion.SHIPPED_RULES.is_file() else None
        )
        self.fusion = fusion.FusionStep(
            self.factory,
            fusion.load_rules(fusion_file) if fusion_file else fusion.FusionRules(),
        )
        self._commands: MqttCommandSender | None = None  # ours to close, whatever state holds
        self._want_ingest, self._want_scheduler = ingest, scheduler
        self.app = create_api(self.state)
        mount_console(self.app, self.state)
        self.app.router.lifespan_context = self._lifespan

    @asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        self.start()
        try:
            yield
        finally:
            self.stop()

    def _site_sources(self) -> dict[str, str] | None:
        """Where each node of the site file is declared; None (not recorded) without a
        file, or when the file can no longer be read: the site itself is loaded already."""
        if self.site_path is None:
            return None
        try:
            return site_sources(self.site_path)
        except SiteError as err:
            log.warning("site sources not recorded: %s", err)
            return None

    def prepare(self) -> None:
        """Migrate, load the site, make the first admin (only while there are no users)."""
        upgrade(self.settings.database_url)
        with transaction(self.factory) as s:  # this month's readings have their partition
            partitions.ensure_months(s.connection(), self.clock())
        if self.site is not None:
            sources = self._site_sources()
            for attempt in range(1, 4):
                try:
                    with transaction(self.factory) as s:
                        report = sync_site(s, self.site, clock=self.clock, sources=sources)
                        passwords = import_gateway_passwords(
                            s, self.site, os.environ, clock=self.clock
                        )
                    break
                except IntegrityError:
                    # another process starting at the same moment inserted the same rows
                    # first; the sync is idempotent, so a retry finds them and merges
                    if attempt == 3:
                        raise
                    log.info("site load raced another process; retrying")
            log.info(
                "site loaded: %s; %d gateway password(s) stored from the environment",
                report,
                passwords,
            )
        try:
            with transaction(self.factory) as s:
                if not s.scalar(select(func.count()).select_from(m.User)):
                    auth.create_user(
                        s,
                        "admin",
                        self.settings.admin_password.get_secret_value(),
                        Role.ADMIN,
                        now=self.clock(),
                    )
                    log.info("created user 'admin' (password from MB_CLOUD_ADMIN_PASSWORD)")
        except (IntegrityError, Conflict):
            pass  # another process starting at the same moment made it

    def start(self) -> None:
        self.prepare()
        self._commands = MqttCommandSender(self.settings)
        self.state.commands = self._commands
        if self._want_ingest:
            self.worker = IngestWorker(
                self.settings,
                self.factory,
                clock=self.clock,
                on_commit=self._committed,
            )
            self.worker.start(wait=0)
            self.state.ingest_ready = self.worker.connected.is_set
        if self._want_scheduler:
            self.scheduler = Scheduler(self)
            self.scheduler.start()
            if self.response is not None:
                self.responder = self.response.responder(
                    self.factory,
                    self._commands,
                    secret=self.settings.secret_key.get_secret_value(),
                    clock=self.clock,
                    interval_s=self.settings.response_interval_s,
                )
                self.responder.start()

    def _committed(self, result: BatchResult) -> None:
        """After each ingest commit: wake the live consoles and the responder when it
        touched alerts (the responder's poll covers other processes' commits)."""
        if result.alerts:
            self.state.notifier.notify()
            if self.responder is not None:
                self.responder.wake()

    def stop(self) -> None:
        if self.responder:
            self.responder.stop()
        if self.scheduler:
            self.scheduler.stop()
        if self.worker:
            self.worker.stop()
        if self._commands is not None:
            self._commands.close()
        self.engine.dispose()
