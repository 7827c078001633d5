"""The console's live stream: one poller per process, fanned out to every open console.

Each console's stream used to query the database on every wake-up; with fifty consoles
open that is fifty queries per change and per poll tick, which slows the API the same
consoles read. Here one task per process reads the alert log after its cursor (woken by
this process's commits through :class:`~cloud.api.notify.ChangeNotifier`, and polling for
other processes' commits) and hands each batch to every subscriber, which filters it by
its user's scope and its own filters in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio
from prometheus_client import Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from starlette.concurrency import run_in_threadpool

from cloud.api.deps import ApiState
from cloud.db import models as m

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 500
HAND_OUT_GAP_S = 0.5  # changes arriving faster go out together (see _run)
KEEPALIVE_S = 15.0  # a comment line this often: proxies close silent connections
# threads the streams' work (rendering, counting) may hold at once: fifty consoles each
# taking a thread per change filled the 40 the requests share, and on SQLite a request
# holding the write lock then waited for a thread to commit (deadlock until the 30 s
# busy timeout)
STREAM_THREADS = 4
QUEUE_BATCHES = 64  # a subscriber this far behind is cut off (it reconnects and reloads)
SUBSCRIBERS = Gauge("mb_console_live_subscribers", "consoles on this process's live stream")
DROPPED = Counter(
    "mb_console_live_dropped_total",
    "console streams cut off because they fell behind (the browser reconnects)",
)


@dataclass(frozen=True, slots=True)
class Change:
    """One committed alert change and the alert as it stood when the feed read it."""

    transition_id: int
    action: str
    actor: str
    at: datetime
    alert: m.Alert  # detached: read-only for subscribers


class Subscription:
    """One console's view of the feed: ``await next()`` gives the next batch, or None
    when the feed cut it off."""

    def __init__(self, feed: AlertFeed) -> None:
        self._feed = feed
        self.queue: asyncio.Queue[list[Change] | None] = asyncio.Queue(QUEUE_BATCHES)

    async def next(self, wait_s: float) -> list[Change] | None:
        """The next batch; an empty list when ``wait_s`` passes without one."""
        try:
            async with asyncio.timeout(wait_s):
                return await self.queue.get()
        except TimeoutError:
            return []

    def close(self) -> None:
        self._feed.unsubscribe(self)


class AlertFeed:
    """The process's reader of the alert log (start on first subscriber, stop on last)."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._cursor: int | None = None
        self.limiter = anyio.CapacityLimiter(STREAM_THREADS)
        self._once: dict[Hashable, asyncio.Future[Any]] = {}

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread, within the streams' share of the threads."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def once(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """``make()``'s value for ``key``, made once for the current batch however many
        consoles ask (consoles of one place, role, language and filter see the same
        fragment; fifty of them made fifty, with two count queries each)."""
        fut = self._once.get(key)
        if fut is None:
            fut = self._once[key] = asyncio.ensure_future(make())
        return await asyncio.shield(fut)

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subscribers.add(sub)
        SUBSCRIBERS.set(len(self._subscribers))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="alert-feed")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        SUBSCRIBERS.set(len(self._subscribers))

    def _latest(self) -> int:
        with self.state.read_factory() as s:
            return s.scalar(select(func.max(m.AlertTransition.id))) or 0

    def _read(self, after: int) -> list[Change]:
        with self.state.read_factory() as s:
            rows = s.execute(
                select(m.AlertTransition, m.Alert)
                .join(m.Alert, m.Alert.id == m.AlertTransition.alert_id)
                .where(m.AlertTransition.id > after)
                .options(selectinload(m.Alert.verdict_row))
                .order_by(m.AlertTransition.id)
                .limit(BATCH)
            ).all()
            s.expunge_all()
        return [Change(t.id, t.action, t.actor, t.at, a) for t, a in rows]

    async def _run(self) -> None:
        wake = self.state.notifier.subscribe()
        loop = asyncio.get_running_loop()
        handed_out = -HAND_OUT_GAP_S  # the loop's time of the last hand-out
        try:
            if self._cursor is None:
                self._cursor = await run_in_threadpool(self._latest)
            while self._subscribers:
                # at most one hand-out per gap: each wakes every console's stream at once,
                # and a request arriving in that burst waits behind it (with fifty consoles
                # a hand-out per change raised the API's p95 by a quarter); the first change
                # after a quiet spell still goes out at once
                rest = HAND_OUT_GAP_S - (loop.time() - handed_out)
                if rest > 0:
                    await asyncio.sleep(rest)
                wake[1].clear()  # before the read: a commit during it wakes the next round
                try:
                    changes = await run_in_threadpool(self._read, self._cursor)
                except Exception:  # a database blip must not end every console's stream
                    log.exception("console feed: reading the alert log failed; retrying")
                    changes = []
                if changes:
                    self._cursor = changes[-1].transition_id
                    self._hand_out(changes)
                    handed_out = loop.time()
                    if len(changes) == BATCH:
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake[1].wait(), self.state.stream_poll_s)
        finally:
            # the next first subscriber starts from the newest change: a console loads
            # its rows when its stream opens, so nothing older is owed to it
            self._cursor = None
            self.state.notifier.unsubscribe(wake)

    def _hand_out(self, changes: list[Change]) -> None:
        self._once.clear()  # keys name their batch; the last batch's values are done with
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(changes)
            except asyncio.QueueFull:
                DROPPED.inc()
                log.warning("console feed: a console fell %d batches behind", QUEUE_BATCHES)
                self.unsubscribe(sub)
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.get_nowait()
                    sub.queue.put_nowait(None)


def feed_of(state: ApiState, holder: object) -> AlertFeed:
    """The feed kept on ``holder`` (the app's state object), made on first use."""
    feed = getattr(holder, "console_feed", None)
    if feed is None:
        feed = AlertFeed(state)
        setattr(holder, "console_feed", feed)  # noqa: B010 - starlette's State is dynamic
    return feed
