"""The gateway's uplink to the cloud broker: replays the outbox over MQTT QoS 1 and
keeps the gateway's retained status.

* MQTT 5 with a persistent session (``clean_start=False`` and a long session expiry), so
  commands and acks sent while the gateway is away wait for it at the broker.
* Per-gateway username/password, TLS when configured.
* A retained ``status`` ``online`` on connect, a retained last will ``offline``.
* Publishes come from the :class:`~edge.outbox.Outbox` in ``seq`` order; an item stays
  there until the cloud acknowledges it on ``cmd/ack`` (handled in ``edge/commands.py``).
  After a reconnect, or when the oldest unacknowledged item was sent longer than
  ``resend_after_s`` ago, the cursor goes back to the oldest unacknowledged item and
  everything from there is sent again (the cloud dedupes on the item's id).
* Reconnects with exponential backoff and jitter, so a fleet does not reconnect in step.
* Every status names the outbox's epoch (see ``edge/outbox.py``), so the cloud learns of a
  reset outbox even before its first new item arrives.
* It only ever publishes under its own prefix.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import Counter, Gauge

from edge.outbox import Outbox
from microbrain.broker.buffered_client import BufferedClient
from microbrain.broker.mosquitto_conf import gateway_client_id
from microbrain.protocol import Channel, GatewayPath, GatewayState, Reply, Status

log = logging.getLogger(__name__)

PUBLISHED = Counter("mb_edge_uplink_published_total", "outbox items published")
RESENT = Counter("mb_edge_uplink_rewinds_total", "times the uplink went back to resend")
REFUSED = Counter("mb_edge_uplink_refused_total", "publishes the broker refused (PUBACK reason)")
CONNECTED = Gauge("mb_edge_uplink_connected", "1 while connected to the cloud broker")

SESSION_EXPIRY_S = 7 * 86_400

CommandHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class UplinkSettings:
    """How to reach the cloud broker, and how hard to push."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False  # TLS even without files: the system's CAs verify the broker
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keepalive_s: int = 30
    client_id: str | None = None
    # paho's in-flight window (QoS 1 messages awaiting PUBACK on the wire)
    max_inflight: int = 200  # measured: 100–200 beat 1000 and 5000 on loopback (bench_uplink)
    # messages handed to paho but not yet PUBACKed; bounds paho's memory
    max_pending: int = 5000
    batch: int = 2000  # rows per outbox read; fewer reads, fewer GIL hand-overs
    # items sent but not acknowledged by the cloud; beyond this the uplink waits
    max_unacked: int = 100_000
    resend_after_s: float = 30.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 60.0


def backoff_delays(low: float, high: float, rng: random.Random | None = None):  # type: ignore[no-untyped-def]
    """Exponential backoff with jitter: each delay drawn from [d/2, d], d doubling to ``high``."""
    rng = rng or random.Random()
    d = low
    while True:
        yield rng.uniform(d / 2, d)
        d = min(high, d * 2)


class Uplink:
    """Connects, keeps connecting, and drains the outbox; see the module docstring."""

    def __init__(
        self,
        path: GatewayPath,
        outbox: Outbox,
        settings: UplinkSettings,
        on_command: CommandHandler | None = None,
        software: str | None = None,
    ) -> None:
        self.path = path
        self.outbox = outbox
        self.settings = settings
        self.on_command = on_command or (lambda topic, raw: None)
        self.software = software
        self.connected = threading.Event()
        self.refused_publishes = 0
        self.connect_refusals: list[str] = []
        self.rewinds = 0
        self.published = 0  # outbox items handed to paho, resends included
        self._stop = threading.Event()
        self._rewind = threading.Event()
        # pending = handed to paho − PUBACKed; each counter has one writer thread (the
        # pump, the network thread; the rare status/reply publishes take a lock), so
        # the hot path takes no lock of ours
        self._handed_by_pump = 0
        self._handed_other = 0
        self._handed_lock = threading.Lock()
        self._pubacked = 0
        self._threads: list[threading.Thread] = []
        self._client = self._make_client()

    # -- set-up --------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        # reads PUBACKs in 64 KiB chunks, not three recv (and GIL hand-overs) each
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            # the broker binds a gateway's login to this one id (no takeover of another's)
            client_id=s.client_id or gateway_client_id(self.path),
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if s.username:
            client.username_pw_set(s.username, s.password)
        if s.tls or s.tls_ca or s.tls_cert:
            # no CA file: paho loads the system's default CAs (mqtts:// to a public CA)
            client.tls_set(
                ca_certs=str(s.tls_ca) if s.tls_ca else None,
                certfile=str(s.tls_cert) if s.tls_cert else None,
                keyfile=str(s.tls_key) if s.tls_key else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.max_inflight_messages_set(s.max_inflight)
        client.max_queued_messages_set(0)
        will = self._status(GatewayState.OFFLINE)
        client.will_set(self.path.topic(Channel.STATUS), will.to_json(), qos=1, retain=True)
        # we run paho's loop in our own thread (for backoff with jitter); without this,
        # every publish from the pump would write to the socket itself, one syscall per
        # message, racing the network thread — with it, publishes queue and the network
        # thread (woken through paho's socket pair) writes them in bulk
        client.on_socket_register_write = lambda client, userdata, sock: None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect_async(s.host, s.port, s.keepalive_s, clean_start=False, properties=props)
        return client

    def _status(self, state: GatewayState) -> Status:
        return Status(state=state, software=self.software, epoch=self.outbox.epoch)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Uplink:
        for target, name in ((self._network_loop, "uplink-net"), (self._pump, "uplink-pump")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Say ``offline`` (retained), disconnect cleanly, stop the threads."""
        if self.connected.is_set():
            info = self._publish(
                Channel.STATUS, None, self._status(GatewayState.OFFLINE).to_json(), retain=True
            )
            if info is not None:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=min(timeout, 2.0))
        self._stop.set()
        self.connected.clear()  # a disconnect from here on is ours, not news
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self._disconnect(min(timeout, 1.0))

    def _disconnect(self, timeout: float) -> None:
        """Send DISCONNECT and close the socket. The network thread is gone and paho
        only queues packets (we own the loop), so write it out here: without it the
        broker holds the session open until keepalive runs out, then publishes our will."""
        client = self._client
        client.disconnect()
        deadline = time.monotonic() + timeout
        while client.socket() is not None and time.monotonic() < deadline:
            # writes what is queued, DISCONNECT last; paho closes the socket after it
            if client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if client.socket() is not None:
                time.sleep(0.01)  # a full socket buffer: let the broker read
        if client.socket() is not None:
            client._sock_close()  # no public close in paho; never leave the socket open

    @property
    def pending(self) -> int:
        """Messages handed to paho and not yet PUBACKed by the broker."""
        return max(0, self._handed_by_pump + self._handed_other - self._pubacked)

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    # -- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self.connect_refusals.append(str(reason_code))
            log.error(
                "cloud broker %s:%s refused the connection: %s",
                self.settings.host,
                self.settings.port,
                reason_code,
            )
            return
        log.info(
            "connected to %s:%s as %s (session present: %s)",
            self.settings.host,
            self.settings.port,
            self.settings.username,
            flags.session_present,
        )
        client.subscribe(self.path.subscription(Channel.CMD), qos=1)
        self._publish(
            Channel.STATUS, None, self._status(GatewayState.ONLINE).to_json(), retain=True
        )
        self._rewind.set()  # replay everything the cloud has not acknowledged
        self.connected.set()
        CONNECTED.set(1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if self.connected.is_set():
            log.warning("disconnected from the cloud broker: %s", reason_code)
        self.connected.clear()
        CONNECTED.set(0)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            # MQTT 5 PUBACK with a reason: e.g. the broker's ACL said no
            self.refused_publishes += 1
            REFUSED.inc()
            log.error("broker refused publish %s: %s", mid, reason_code)
        self._pubacked += 1

    def _on_message(self, client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        try:
            self.on_command(message.topic, message.payload)
        except Exception:  # a bug in a handler must not take the uplink down
            log.exception("command handler failed on %s", message.topic)

    # -- threads -------------------------------------------------------------------

    def _network_loop(self) -> None:
        delays = backoff_delays(self.settings.backoff_min_s, self.settings.backoff_max_s)
        up = False
        while not self._stop.is_set():
            if not up:
                try:
                    up = self._client.reconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS
                except OSError as err:
                    log.debug("cloud broker not reachable: %s", err)
                    up = False
                if not up:
                    self._stop.wait(next(delays))
                    continue
            rc = self._client.loop(timeout=0.1)
            if self.connected.is_set():
                delays = backoff_delays(self.settings.backoff_min_s, self.settings.backoff_max_s)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                up = False
                self.connected.clear()
                CONNECTED.set(0)
                self._stop.wait(next(delays))

    def _pump(self) -> None:
        s = self.settings
        cursor = 0
        sent: deque[tuple[int, float]] = deque()  # (last seq of a batch, when it went)
        resend_after, last_rewind_at = s.resend_after_s, None
        topics = {ch: self.path.topic(ch) for ch in (Channel.EVENT, Channel.READING)}
        while not self._stop.is_set():
            try:
                if not self.connected.wait(0.2):
                    continue
                if self._rewind.is_set():
                    self._rewind.clear()
                    cursor, _ = self._go_back(sent)
                first = self.outbox.first_seq()
                if first is not None and first <= cursor:
                    while sent and sent[0][0] < first:
                        sent.popleft()
                    if sent and time.monotonic() - sent[0][1] > resend_after:
                        # the same item unacknowledged again: the cloud is stalled, not lossy;
                        # back off so a long stall is not a resend storm
                        resend_after = (
                            min(resend_after * 2, s.resend_after_s * 8)
                            if first == last_rewind_at
                            else s.resend_after_s
                        )
                        last_rewind_at = first
                        cursor, first = self._go_back(sent)
                        self.rewinds += 1
                        RESENT.inc()
                        log.warning(
                            "no ack for seq %s: resending from there (next wait %.0f s)",
                            first,
                            resend_after,
                        )
                    elif cursor - first + 1 >= s.max_unacked:
                        self._stop.wait(0.05)  # the cloud is behind: wait for its acks
                        continue
                if self.pending >= s.max_pending:
                    self._stop.wait(0.002)  # paho holds enough; let the PUBACKs come in
                    continue
                top = self.outbox.last_seq  # read first: every seq up to it is committed
                items = self.outbox.after(cursor, limit=s.batch)
                if not items:
                    # all of (cursor, top] is gone (evicted while we could not send, or
                    # acked): step past it, or wait_for_items_after returns at once and
                    # this loop spins a core
                    cursor = max(cursor, top)
                    self.outbox.wait_for_items_after(cursor, 0.2)
                    continue
                publish = self._client.publish
                for item in items:
                    info = publish(topics[item.channel], item.payload, qos=1)
                    self._handed_by_pump += 1
                    if info.rc not in (
                        MQTTErrorCode.MQTT_ERR_SUCCESS,
                        MQTTErrorCode.MQTT_ERR_NO_CONN,
                    ):
                        self._handed_by_pump -= 1
                        break  # connection gone; on reconnect we go back anyway
                    cursor = item.seq
                    self.published += 1
                    PUBLISHED.inc()
                sent.append((cursor, time.monotonic()))
            except Exception:
                # a transient failure (sqlite busy or I/O, a paho error) must not end
                # uploads for good: log it, breathe, go on from the same cursor
                log.exception("uplink pump: iteration failed; retrying in 1 s")
                self._stop.wait(1.0)

    def _go_back(self, sent: deque[tuple[int, float]]) -> tuple[int, int | None]:
        sent.clear()
        first = self.outbox.first_seq()
        return (first - 1 if first is not None else self.outbox.last_seq), first

    # -- publishing ----------------------------------------------------------------

    def _publish(
        self, channel: Channel, name: str | None, payload: bytes, retain: bool = False
    ) -> mqtt.MQTTMessageInfo | None:
        """Status and replies (not the outbox's hot path): always under our own prefix."""
        return self._publish_topic(self.path.topic(channel, name), payload, retain)

    def _publish_topic(
        self, topic: str, payload: bytes, retain: bool = False
    ) -> mqtt.MQTTMessageInfo | None:
        with self._handed_lock:
            self._handed_other += 1
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            with self._handed_lock:
                self._handed_other -= 1
            return None
        return info

    def publish_status(self, status: Status) -> None:
        """The retained heartbeat; dropped (not queued) while offline, the will covers it."""
        if self.connected.is_set():
            self._publish(Channel.STATUS, None, status.to_json(), retain=True)

    def publish_reply(self, reply: Reply) -> None:
        self._publish(Channel.REPLY, reply.name, reply.to_json())

    def publish_raw(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo | None:
        """Publish to any topic, for drills that check the broker's ACL refuses it."""
        return self._publish_topic(topic, payload)
