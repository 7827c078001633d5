"""The ingest worker: an MQTT 5 client on the shared subscription feeding batches to
:func:`store_batch`.

paho's network thread only queues messages; a writer thread drains the queue in
batches (by size and latency), commits, then (and only then) publishes ``cmd/ack`` to
each gateway and PUBACKs the broker. A worker killed before its commit therefore
leaves every message unacknowledged at both ends: the broker redelivers it to the
persistent session and the gateway's outbox still holds it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cloud.clock import Clock, system_clock
from cloud.ingest import dead_letters, metrics
from cloud.ingest.store import BatchResult, Incoming, dead_letter_internal, store_batch
from cloud.settings import Settings
from microbrain.broker.buffered_client import BufferedClient
from microbrain.protocol import MAX_ACK_RANGES, Ack, cloud_subscription
from microbrain.protocol.payloads import INT64_MAX

log = logging.getLogger(__name__)
RECEIVE_MAXIMUM = 2000  # messages the broker may have in flight to us, unacknowledged
STATUS_FILTER = "mb/v1/+/+/+/status"  # retained messages skip shared subscriptions
TRANSIENT_RETRIES = 5  # a whole batch is retried this often before it is split up


def ingest_filters(group: str | None) -> list[str]:
    """The shared subscription takes only what gateways send (events, readings, replies):
    a plain ``#`` also brought back the cloud's own ``cmd/#`` publishes. Statuses come on
    their own, non-shared filter (the broker hands retained messages only to those)."""
    tree = cloud_subscription(group).removesuffix("#")
    return [tree + "event", tree + "reading", tree + "reply/+", STATUS_FILTER]


def _may_pass(err: IntegrityError | OperationalError) -> bool:
    """Whether retrying the same batch may succeed: a unique violation is a racing worker
    (the ledger then dedupes the retry); a CHECK, NOT NULL or trigger failure is not."""
    if isinstance(err, OperationalError):
        return True
    orig = err.orig
    state = getattr(orig, "sqlstate", None)  # psycopg
    if state is not None:
        return bool(state == "23505")
    name = getattr(orig, "sqlite_errorname", "")
    return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY") or (
        not name and "UNIQUE constraint failed" in str(orig)
    )


class IngestWorker:
    """One consumer of the shared subscription; run several, in one process or many."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        *,
        clock: Clock = system_clock,
        on_commit: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.clock = clock
        self.on_commit = on_commit
        # this worker's own caps, not the process's: two workers may be set differently
        self.dead_letter_caps = dead_letters.Caps.from_settings(settings)
        self.client_id = settings.ingest_client_id or f"mb-cloud-{uuid.uuid4().hex[:12]}"
        # (message, mid, qos, connection generation)
        self._queue: queue.Queue[tuple[Incoming, int, int, int]] = queue.Queue()
        self._generation = 0  # a PUBACK belongs to the connection the message came on
        self._stop = threading.Event()
        self._pending = 0  # received, not yet committed (or refused)
        self._pending_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self.connected = threading.Event()
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        user, password = settings.broker_credentials
        if user:
            self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        # paho declares ints; its backoff arithmetic takes the half second as well
        self.client.reconnect_delay_set(0.5, 10)  # type: ignore[arg-type]

    # --- MQTT side (paho's thread) ---------------------------------------------------
    def _on_connect(self, client, _userdata, _flags, reason_code, _props=None):  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            log.error("broker refused the ingest connection: %s", reason_code)
            return
        self._generation += 1
        client.subscribe([(f, 1) for f in ingest_filters(self.settings.ingest_group)])
        log.info("ingest %s connected", self.client_id)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props=None):  # type: ignore[no-untyped-def]
        refused = [rc for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("broker refused the ingest subscription: %s", refused)
            return
        self.connected.set()  # "connected" means: messages now reach us

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props=None):  # type: ignore[no-untyped-def]
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("ingest %s lost the broker (%s); reconnecting", self.client_id, reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._pending_lock:
            self._pending += 1
        self._queue.put(
            # bytes() of a bytes object is that object: no copy
            (
                Incoming(msg.topic, bytes(msg.payload), self.clock()),
                msg.mid,
                msg.qos,
                self._generation,
            )
        )

    # --- writer side ----------------------------------------------------------------
    def _next_batch(self) -> list[tuple[Incoming, int, int, int]]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.ingest_batch_latency_s
        # an event is what people wait for: once one is in, take only what is already
        # queued and commit, instead of waiting out the latency window for readings
        urgent = first[0].topic.endswith("/event")
        while len(batch) < self.settings.ingest_batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0 and not urgent
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            batch.append(item)
            urgent = urgent or item[0].topic.endswith("/event")
        return batch

    def _commit(
        self,
        items: list[Incoming],
        *,
        retries: int = TRANSIENT_RETRIES,
        retry_conflicts: bool = True,
    ) -> BatchResult:
        """Commit ``items`` in one transaction, retrying only errors that may pass: a racing
        worker opened the same alert (a unique violation), a deadlock or the database
        restarting (OperationalError). The ledger makes a redone batch harmless. Anything
        else (a DataError such as a number out of range, a CHECK or a trigger refusing a row)
        fails the same way every time: raised at once, so the caller can isolate the message
        that causes it."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                with self.factory() as session, session.begin():
                    result = store_batch(session, items, self.clock(), caps=self.dead_letter_caps)
                metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
                return result
            except (IntegrityError, OperationalError) as err:
                attempt += 1
                if (
                    not _may_pass(err)
                    or attempt > retries
                    or (isinstance(err, IntegrityError) and not retry_conflicts)
                    or (self._stop.is_set() and attempt > 3)
                ):
                    raise
                metrics.BATCH_RETRIES.inc()
                log.warning("ingest batch failed (%s); retry %d", type(err).__name__, attempt)
                time.sleep(min(0.05 * attempt, 2.0))

    def _commit_isolating(self, items: list[Incoming]) -> BatchResult:
        """Commit the batch; if it keeps failing (a permanent database error such as a
        value out of range, or a bug meeting one strange message), find the message that
        fails by bisection and dead-letter it, so one poison message cannot block the rest
        of this gateway's and every other gateway's messages: one poison in n messages
        costs about 2·log2(n) commits, not n."""
        try:
            return self._commit(items)
        except Exception as err:  # noqa: BLE001 - isolate the cause below
            log.warning(
                "ingest batch of %d failed (%s: %s); isolating the cause",
                len(items),
                type(err).__name__,
                str(err)[:300],
            )
            if isinstance(err, OperationalError):
                # the database, not a message: wait for it without splitting
                return self._isolate(items)
            return self._split(items, err)

    def _split(self, items: list[Incoming], err: Exception) -> BatchResult:
        """``items`` failed together: store each half on its own (recursing into a half
        that fails), or dead-letter the one message that fails alone."""
        if len(items) == 1:
            return self._dead_letter(items[0], err)
        half = len(items) // 2
        total = BatchResult()
        for part in (items[:half], items[half:]):
            total.merge(self._isolate(part))
        return total

    def _isolate(self, part: list[Incoming]) -> BatchResult:
        while True:
            metrics.ISOLATION_COMMITS.inc()
            try:
                # a half that meets a unique violation is split at once (its halves retry
                # on their own); only a lone message retries it in full before it is
                # dead-lettered
                return self._commit(part, retry_conflicts=len(part) == 1)
            except OperationalError:
                # the database itself is unavailable, not this message: dead-lettering would
                # fail as well, so wait for it (the messages stay unacknowledged meanwhile)
                if self._stop.is_set():
                    raise
                log.warning("database unavailable; waiting to store %d message(s)", len(part))
                time.sleep(1.0)
            except Exception as err:  # noqa: BLE001 - a poison message is in this part
                return self._split(part, err)

    def _dead_letter(self, item: Incoming, err: Exception) -> BatchResult:
        # the poison message itself: keep it, with the reason
        log.error(
            "ingest message on %s failed alone (%s: %s); dead-lettered",
            item.topic[:120],
            type(err).__name__,
            str(err)[:300],
        )
        metrics.ISOLATION_COMMITS.inc()
        with self.factory() as session, session.begin():
            return dead_letter_internal(session, item, err)

    def _publish_acks(self, result: BatchResult) -> None:
        for path, all_ranges in result.ack_ranges().items():
            # a seq salvaged from a payload refused for being beyond int64 is in no outbox
            # (and no Ack may carry it)
            ranges = tuple(
                (first, min(last, INT64_MAX)) for first, last in all_ranges if first <= INT64_MAX
            )
            # a batch full of gaps can hold more ranges than one Ack may carry (the largest
            # must fit in a payload the gateway accepts): send several
            for start in range(0, len(ranges), MAX_ACK_RANGES):
                ack = Ack(ranges=ranges[start : start + MAX_ACK_RANGES], epoch=path.epoch)
                self.client.publish(path.topic("cmd", "ack"), ack.to_json(), qos=1)
                metrics.ACKS.inc()

    def _run_writer(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                result = self._commit_isolating([item for item, _, _, _ in batch])
            except Exception:
                log.exception("ingest batch of %d lost its commit; not acknowledged", len(batch))
                self._settled(len(batch))
                continue
            # the batch counts as pending until its acks and the on_commit hook are done:
            # drain() then means "stored, acknowledged and announced", not only "stored"
            try:
                self._publish_acks(result)
                for _, mid, qos, generation in batch:
                    # after a reconnect the broker redelivers; a stale mid must not ack
                    # another message
                    if qos > 0 and generation == self._generation:
                        self.client.ack(mid, qos)
                if self.on_commit is not None:
                    try:
                        self.on_commit(result)
                    except Exception:
                        log.exception("on_commit hook failed")
            finally:
                self._settled(len(batch))

    def _settled(self, count: int) -> None:
        with self._pending_lock:
            self._pending -= count

    # --- lifecycle ------------------------------------------------------------------
    def start(self, wait: float = 10.0) -> IngestWorker:
        """Connect (persistent session), subscribe and start the writer thread; with
        ``wait``, raise TimeoutError unless subscribed within that many seconds."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # a persistent session only under a stable id: a random id's session would keep
        # taking its share of the subscription after the process is gone, until it expired
        persistent = self.settings.ingest_client_id is not None
        props.SessionExpiryInterval = self.settings.session_expiry_s if persistent else 0
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self._writer = threading.Thread(
            target=self._run_writer, name=f"ingest-{self.client_id}", daemon=True
        )
        self._writer.start()
        # connect in paho's thread, retrying: a broker that is down (or not up yet) must not
        # stop the cloud from starting; /healthz tells whether the ingest is subscribed
        self.client.connect_async(
            self.settings.broker_host,
            self.settings.broker_port,
            keepalive=30,
            clean_start=not persistent,
            properties=props,
        )
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            raise TimeoutError(f"ingest could not connect to {self.settings.broker_url}")
        return self

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything received has been committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pending == 0:
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout=30)
        self.client.disconnect()
        self.client.loop_stop()
