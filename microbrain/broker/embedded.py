"""The broker ``microbrain up`` starts itself on a box with no MQTT broker running.

:func:`start_embedded_broker` picks one (docs/embedded-broker.md has the evaluation):

* ``MosquittoBroker`` — the system's ``mosquitto`` binary with a generated config
  (persistence on disk, large queues), when it is installed: the broker production runs,
  MQTT 5 and 3.1.1 on one port.
* ``IotcoreBroker`` — rumqttd compiled into the ``iotcore`` wheel, in a child process:
  needs nothing but pip, speaks MQTT 5 (the version microbrain's own clients use) with
  shared subscriptions; queues and retained messages live in memory only.
* ``AmqttBroker`` — amqtt, pure-Python asyncio, in a background thread with its own
  event loop. MQTT 3.1.1 only, so microbrain's MQTT 5 clients cannot connect to it:
  never chosen automatically, kept for 3.1.1-only demos and for the comparison.

All share one small interface (:class:`EmbeddedBroker`): ``start()``, ``stop()``,
``host``, ``port``, ``running``, and work as context managers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, Self

if TYPE_CHECKING:  # imported when an IotcoreBroker starts, not with this module
    from iotcore import Broker as IotcoreProcess

log = logging.getLogger(__name__)

BrokerKind = Literal["auto", "mosquitto", "iotcore", "amqtt"]


class BrokerStartError(RuntimeError):
    """The embedded broker could not start; the message names the fix."""


class EmbeddedBroker(Protocol):
    """What ``microbrain up`` needs from a broker it runs itself."""

    host: str
    port: int

    def start(self) -> EmbeddedBroker: ...

    def stop(self) -> None: ...

    @property
    def running(self) -> bool: ...


def _port_taken_message(host: str, port: int) -> str:
    return (
        f"cannot start the embedded MQTT broker: {host}:{port} is already in use. "
        f"If a broker already listens there (e.g. the system's Mosquitto: "
        f"`ss -ltnp 'sport = :{port}'` shows it), use it instead of embedding one; "
        f"otherwise stop what holds the port or choose another port"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for private brokers in tests and benchmarks)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _check_port_free(host: str, port: int) -> None:
    """Fail early, with the fix, when something already listens on host:port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # SO_REUSEADDR as both brokers use it: a socket in TIME_WAIT is not "taken".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise BrokerStartError(_port_taken_message(host, port)) from err
            raise BrokerStartError(
                f"cannot start the embedded MQTT broker on {host}:{port}: {err.strerror}"
            ) from err


def _wait_listening(host: str, port: int, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise BrokerStartError(
        f"the embedded MQTT broker did not listen on {host}:{port} within {timeout:.0f} s"
    )


class AmqttBroker:
    """amqtt in a daemon thread with its own event loop.

    Example::

        with AmqttBroker("127.0.0.1", 1883) as broker:
            ...  # paho clients connect to broker.host:broker.port (MQTT 3.1.1)

    ``session_expiry_s`` drops a persistent (clean_session=False) session that stayed
    disconnected that long; None keeps it while the process lives. Sessions, queued
    and retained messages live in memory only: they are lost when the process stops.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 1883, *, session_expiry_s: int | None = 24 * 3600
    ) -> None:
        self.host = host
        self.port = port
        self.session_expiry_s = session_expiry_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _config(self) -> dict[str, object]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "session_expiry_interval": self.session_expiry_s,
            # Only our open auth: amqtt's default packet/event loggers cost throughput
            # and its $SYS publisher is noise for one box.
            "plugins": {"microbrain.broker.amqtt_auth.OpenAuthPlugin": {}},
        }

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def start(self, timeout: float = 10.0) -> Self:
        """Start listening; returns once clients can connect. Raises BrokerStartError."""
        # amqtt is imported here, not at module level: it is a dev extra (MQTT 3.1.1
        # only, never the automatic choice), and mosquitto/iotcore users do not need it
        try:
            import amqtt.broker  # noqa: F401
        except ImportError as err:
            raise BrokerStartError(
                "amqtt is not installed: pip install amqtt (or use mosquitto / iotcore)"
            ) from err
        if self._thread is not None:
            raise BrokerStartError("this AmqttBroker was already started")
        _check_port_free(self.host, self.port)
        self._thread = threading.Thread(target=self._run, name=f"amqtt:{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise BrokerStartError(f"amqtt did not start within {timeout:.0f} s")
        if self._error is not None:
            self._thread.join(timeout)
            cause = self._error.__cause__ or self._error
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise BrokerStartError(_port_taken_message(self.host, self.port)) from cause
            raise BrokerStartError(
                f"amqtt could not start on {self.host}:{self.port}: {self._error}"
            ) from self._error
        log.info("embedded amqtt broker listening on %s:%s", self.host, self.port)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker and its thread; safe to call twice."""
        thread, loop, stop = self._thread, self._loop, self._stop_requested
        if thread is None or not thread.is_alive():
            return
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("amqtt thread did not stop within %.0f s", timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as err:  # noqa: BLE001 - reported to start(), never swallowed
            self._error = err
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        from amqtt.broker import Broker

        self._stop_requested = asyncio.Event()
        broker = Broker(self._config())
        await broker.start()
        self._ready.set()
        try:
            await self._stop_requested.wait()
        finally:
            await broker.shutdown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def minimal_mosquitto_conf(host: str, port: int, data_dir: Path, extra: str = "") -> str:
    """A Mosquitto config for one box: anonymous on ``host``, persistent, large queues.

    The queue and autosave settings follow REFERENCE.md's loss findings (and
    mosquitto_conf.py): Mosquitto's defaults (1,000 queued, 20 in flight, autosave only
    on exit) drop PUBACKed QoS 1 messages. Per-gateway credentials and ACLs come from
    ``microbrain broker config`` instead (pass its file as ``MosquittoBroker(conf=...)``).

    ``extra`` lines are appended (tests add auth this way): one that sets
    ``allow_anonymous`` or ``password_file`` replaces the anonymous access, one that
    sets ``user`` replaces the run-as user.
    """
    lines = {line.split(None, 1)[0] for line in extra.splitlines() if line.strip()}
    # Started as root, mosquitto drops to the 'mosquitto' user, who cannot write into a
    # data dir that root owns: persistence would fail silently. Stay the caller's user.
    as_root = os.name == "posix" and os.geteuid() == 0 and "user" not in lines
    anonymous = not lines & {"allow_anonymous", "password_file"}
    return (
        ("user root\n" if as_root else "")
        + f"listener {port} {host}\n"
        + ("allow_anonymous true\n" if anonymous else "")
        + "persistence true\n"
        f"persistence_location {data_dir}/\n"
        "autosave_interval 1\n"
        "autosave_on_changes false\n"
        "max_queued_messages 1000000\n"
        "max_queued_bytes 0\n"
        "max_inflight_messages 1000\n"
        "persistent_client_expiration 14d\n"
        "max_packet_size 262144\n"
        "set_tcp_nodelay true\n"
        "log_dest stderr\n" + extra
    )


class MosquittoBroker:
    """The system's ``mosquitto`` as a child process with a generated config.

    Example::

        with MosquittoBroker("127.0.0.1", 1883, Path("var/broker")) as broker:
            ...

    ``conf`` starts it with an existing config file instead of the generated
    anonymous-loopback one, e.g. the per-gateway credentials and ACL written by
    :func:`microbrain.broker.mosquitto_conf.write_broker_config`; that file must listen
    on ``host:port``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        data_dir: Path = Path("var/broker"),
        *,
        conf: Path | None = None,
        executable: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir)
        self.conf = conf
        self.executable = executable or mosquitto_executable()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The mosquitto process's id while it runs (drills sample its CPU)."""
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self, timeout: float = 10.0) -> Self:
        """Start mosquitto; returns once clients can connect. Raises BrokerStartError."""
        if self.executable is None:
            raise BrokerStartError(
                "mosquitto is not installed: apt-get install mosquitto "
                "(or the pip-only fallback: pip install iotcore)"
            )
        if self._proc is not None:
            raise BrokerStartError("this MosquittoBroker was already started")
        _check_port_free(self.host, self.port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.conf
        if conf is None:
            conf = self.data_dir / "mosquitto.conf"
            conf.write_text(minimal_mosquitto_conf(self.host, self.port, self.data_dir.resolve()))
        log_path = self.data_dir / "mosquitto.log"
        with log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                [self.executable, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT
            )
        try:
            _wait_listening(self.host, self.port, timeout, alive=lambda: self.running)
        except BrokerStartError:
            # still running but not listening: stop it, or it would hold its port (and
            # persistence file) as an orphan that no one will ever stop
            self.stop()
            raise
        if self._proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            self._proc = None
            detail = " | ".join(tail)
            if "Address already in use" in detail:
                raise BrokerStartError(_port_taken_message(self.host, self.port))
            raise BrokerStartError(f"mosquitto exited at start-up ({log_path}): {detail}")
        log.info("mosquitto (%s) listening on %s:%s", conf, self.host, self.port)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, so Mosquitto saves its persistence file; SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rumqttd_toml(host: str, port: int, mqtt311_port: int | None = None) -> str:
    """rumqttd config: MQTT 5 on ``port``; MQTT 3.1.1 needs its own port in rumqttd."""

    def listener(version: str, listen_port: int) -> str:
        return (
            f"[{version}.1]\n"
            f'name = "{version}-1"\n'
            f'listen = "{host}:{listen_port}"\n'
            "next_connection_delay_ms = 1\n"
            f"[{version}.1.connections]\n"
            "connection_timeout_ms = 60000\n"
            # payloads are <= 64 KiB (evidence goes over HTTP), as mosquitto's max_packet_size
            "max_payload_size = 262144\n"
            "max_inflight_count = 1000\n"
            "dynamic_filters = true\n"
        )

    text = (
        "id = 0\n"
        "[router]\n"
        "id = 0\n"
        "max_connections = 10010\n"
        "max_outgoing_packet_count = 200\n"
        # the in-memory log that holds messages for away subscribers: up to 10 x 100 MiB
        "max_segment_size = 104857600\n"
        "max_segment_count = 10\n" + listener("v5", port)
    )
    if mqtt311_port is not None:
        text += listener("v4", mqtt311_port)
    return text


class IotcoreBroker:
    """rumqttd (from the ``iotcore`` wheel) in a child process, MQTT 5 on ``port``.

    Example::

        with IotcoreBroker("127.0.0.1", 1883, Path("var/broker")) as broker:
            ...  # MQTT 5 clients; MQTT 3.1.1 clients on mqtt311_port if one is given

    Sessions, queued and retained messages are kept in memory: a restart loses them,
    and MQTT 5 session expiry is not honoured (a persistent session lives until restart).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        data_dir: Path = Path("var/broker"),
        *,
        mqtt311_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir)
        self.mqtt311_port = mqtt311_port
        self._broker: IotcoreProcess | None = None

    @property
    def running(self) -> bool:
        return self._broker is not None and self._broker.is_running

    def start(self, timeout: float = 10.0) -> Self:
        """Start rumqttd; returns once clients can connect. Raises BrokerStartError."""
        try:
            from iotcore import Broker
        except ImportError as err:
            raise BrokerStartError(
                "iotcore is not installed: pip install iotcore (or apt-get install mosquitto)"
            ) from err
        if self._broker is not None:
            raise BrokerStartError("this IotcoreBroker was already started")
        _check_port_free(self.host, self.port)
        if self.mqtt311_port is not None:
            _check_port_free(self.host, self.mqtt311_port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "rumqttd.toml"
        conf.write_text(rumqttd_toml(self.host, self.port, self.mqtt311_port))
        broker = Broker(config_path=str(conf))
        try:
            broker.start(timeout)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise BrokerStartError(_port_taken_message(self.host, self.port)) from err
            raise BrokerStartError(f"iotcore could not start: {err}") from err
        except RuntimeError as err:
            raise BrokerStartError(f"iotcore could not start ({conf}): {err}") from err
        self._broker = broker
        log.info("embedded iotcore (rumqttd) broker listening on %s:%s", self.host, self.port)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child process; safe to call twice."""
        broker, self._broker = self._broker, None
        if broker is not None:
            broker.stop(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mosquitto_executable() -> str | None:
    """Path of the system's mosquitto binary (Debian puts it in /usr/sbin), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if Path(candidate).is_file():
            return candidate
    return None


def iotcore_available() -> bool:
    """Whether the ``iotcore`` wheel (rumqttd) is importable."""
    try:
        import iotcore  # noqa: F401
    except ImportError:
        return False
    return True


def start_embedded_broker(
    host: str = "127.0.0.1",
    port: int = 1883,
    *,
    kind: BrokerKind = "auto",
    data_dir: Path = Path("var/broker"),
) -> EmbeddedBroker:
    """Start the broker ``microbrain up`` runs itself and return it (call ``stop()``).

    ``auto`` prefers the system's Mosquitto (what production runs; persistence on disk)
    and falls back to iotcore (MQTT 5 from a pip wheel, in memory). amqtt is only
    started when asked for by name: it refuses MQTT 5 clients.

    >>> broker = start_embedded_broker(port=18830, data_dir=tmp)  # doctest: +SKIP
    >>> broker.stop()  # doctest: +SKIP
    """
    if kind == "mosquitto" or (kind == "auto" and mosquitto_executable()):
        return MosquittoBroker(host, port, data_dir).start()
    if kind == "iotcore" or (kind == "auto" and iotcore_available()):
        if kind == "auto":
            log.warning(
                "mosquitto is not installed; starting the embedded iotcore broker "
                "(in memory: queued and retained messages do not survive a restart). "
                "For production: apt-get install mosquitto"
            )
        return IotcoreBroker(host, port, data_dir).start()
    if kind == "amqtt":
        return AmqttBroker(host, port).start()
    raise BrokerStartError(
        "no MQTT broker to embed: apt-get install mosquitto (preferred) or pip install iotcore"
    )
