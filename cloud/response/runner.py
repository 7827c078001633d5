"""The response loop: playbooks applied to new alerts, deliveries per channel, voice
warnings on their turn.

Each channel sends from a thread of its own, so a robot that hangs until its timeout
delays only its own messages. :meth:`Responder.step` runs one round of everything in the
caller's thread: what the tests drive with an injected clock.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from cloud.clock import Clock
from cloud.commands import CommandSender
from cloud.db import transaction
from cloud.response.announcements import announce_due
from cloud.response.channels.base import Channel
from cloud.response.deliveries import (
    DEFAULT_RETRY,
    DeliveryReport,
    Links,
    RetryPolicy,
    deliver_due,
    release_lease,
)
from cloud.response.messages import Wording
from cloud.response.playbooks import Playbooks
from cloud.response.respond import RunReport, respond_to_new

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StepReport:
    runs: list[RunReport]
    deliveries: dict[str, DeliveryReport]
    announcements: int


class Responder:
    """Everything the playbooks ask for, for one process; several may run side by side
    (runs, turns and channel leases are guarded rows)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        book: Playbooks,
        channels: Mapping[str, Channel],
        sender: CommandSender | None,
        words: Wording,
        links: Links,
        *,
        clock: Clock,
        interval_s: float = 0.25,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.factory = factory
        self.book = book
        self.channels = dict(channels)
        self.sender = sender
        self.words = words
        self.links = links
        self.clock = clock
        self.interval_s = interval_s
        self.retry = retry
        self.holder = f"responder-{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._new_alerts = threading.Event()
        self._wake = {cid: threading.Event() for cid in self.channels}
        self._threads: list[threading.Thread] = []

    # --- one round, in the caller's thread ------------------------------------------

    def respond(self) -> list[RunReport]:
        with transaction(self.factory) as s:
            runs = respond_to_new(s, self.book, now=self.clock())
        if any(r.notifications for r in runs):
            for event in self._wake.values():
                event.set()
        return runs

    def deliver(self, channel_id: str) -> DeliveryReport:
        return deliver_due(
            self.factory,
            self.channels[channel_id],
            self.words,
            self.links,
            now=self.clock(),
            holder=self.holder,
            retry=self.retry,
        )

    def announce(self) -> int:
        if self.sender is None:
            return 0
        return announce_due(self.factory, self.sender, self.book, now=self.clock())

    def step(self) -> StepReport:
        runs = self.respond()
        deliveries = {cid: self.deliver(cid) for cid in self.channels}
        return StepReport(runs, deliveries, self.announce())

    # --- threads ---------------------------------------------------------------------

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._main, name="responder", daemon=True)]
        self._threads += [
            threading.Thread(target=self._channel, args=(cid,), name=f"channel-{cid}", daemon=True)
            for cid in self.channels
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "responder started: %d playbook(s), channels %s",
            len(self.book.book.playbooks),
            ", ".join(self.channels) or "none",
        )

    def wake(self) -> None:
        """New alerts were committed here: look now instead of at the next poll (the poll
        stays, for alerts another process committed)."""
        self._new_alerts.set()

    def _main(self) -> None:
        while not self._stop.is_set():
            self._new_alerts.wait(self.interval_s)
            self._new_alerts.clear()
            if self._stop.is_set():
                break
            try:
                self.respond()
                self.announce()
            except Exception:
                log.exception("response step failed; retrying")

    def _channel(self, channel_id: str) -> None:
        wake = self._wake[channel_id]
        while not self._stop.is_set():
            wake.wait(self.interval_s)
            wake.clear()
            if self._stop.is_set():
                break
            try:
                self.deliver(channel_id)
            except Exception:
                log.exception("channel %s: delivery step failed; retrying", channel_id)

    def stop(self) -> None:
        self._stop.set()
        self._new_alerts.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=15)
        try:  # let another process take our channels at once instead of after the lease
            with transaction(self.factory) as s:
                for cid in self.channels:
                    release_lease(s, cid, self.holder, self.clock())
        except Exception:  # noqa: BLE001 - the database away at shutdown: the lease expires
            log.warning("channel leases not released; they run out by themselves")
