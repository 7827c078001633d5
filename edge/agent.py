"""The gateway agent: sensors + (cameras) + outbox + uplink + commands, in one process.

Everything the gateway learns goes through :meth:`GatewayAgent.emit` (events) or the
sensor hub's sink (readings and events) into the durable outbox; the uplink drains the
outbox to the cloud and the cloud's acks empty it. SIGTERM/SIGINT stop it cleanly: the
cameras and sensors stop first, a retained ``offline`` status goes out, then the uplink.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge.commands import Announcer, CommandHandler, ReplyDetail
from edge.config import GatewayConfig, environment, password
from edge.elevator_guard import ElevatorGuard
from edge.evidence_upload import EvidenceQueue, EvidenceUploader
from edge.health import collect_health
from edge.model_update.download import Credentials
from edge.model_update.install import ModelManager
from edge.outbox import Outbox, OutboxLimits
from edge.sensors.hub import SensorHub
from edge.sensors.local_broker import LocalSensorClient
from edge.uplink import Uplink, UplinkSettings
from microbrain import __version__
from microbrain.protocol import Event, GatewayState, Reading, Recheck, Status
from microbrain.site import load_site
from microbrain.site.model import Site

if TYPE_CHECKING:  # imported when the cameras start: a sensors-only gateway needs no OpenCV
    from edge.video.runner import VideoGateway

log = logging.getLogger(__name__)


class ReloadError(RuntimeError):
    """A new site file this running agent cannot take without a restart."""


SILENCE_CHECK_S = 5.0


class GatewayAgent:
    """Build with a validated config and its site; :meth:`run` until told to stop."""

    def __init__(self, config: GatewayConfig, site: Site, site_dir: Path | None = None) -> None:
        self.config = config
        self.site = site
        self.place = site.gateway(config.gateway)
        self.path = self.place.path
        self.site_dir = site_dir or config.site.parent
        env = environment()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            config.data_dir / "outbox.db",
            OutboxLimits(
                max_bytes=int(config.outbox.max_mb * 2**20), max_items=config.outbox.max_items
            ),
        )
        cloud = config.cloud
        tls = cloud.tls
        username = cloud.username or self.place.gateway.id
        self.uplink = Uplink(
            self.path,
            self.outbox,
            UplinkSettings(
                host=cloud.host,
                port=cloud.port,
                username=username,
                tls=cloud.uses_tls,
                password=password(cloud, env, self.place.gateway.password_env),
                tls_ca=tls.ca_file if tls else None,
                tls_cert=tls.cert_file if tls else None,
                tls_key=tls.key_file if tls else None,
                keepalive_s=cloud.keepalive_s,
                resend_after_s=config.outbox.resend_after_s,
                max_unacked=config.outbox.max_unacked,
            ),
            software=f"microbrain {__version__}",
        )
        self._local_password = password(config.local_broker, env) if config.local_broker else None
        self._rejected_before_reload = 0  # the health report counts across reloads
        self.hub: SensorHub
        self.local: LocalSensorClient | None = None
        self._build_sensors()
        audio = config.audio
        announcer = (
            Announcer(audio.out_dir, audio.clips_dir, audio.player, audio.voice, audio.speakers)
            if audio
            else None
        )
        self.commands = CommandHandler(
            self.path,
            self.outbox,
            self.uplink.publish_reply,
            announcer,
            self._recheck,
            self.reload,
        )
        self.models = ModelManager.from_key_file(
            config.model_key,
            config.models_dir,
            reply=self.commands.reply_model,
            on_swap=self._swap_model,
            gap=self._between_frames,
            cloud_api=config.cloud_api,
            credentials=Credentials(username, self.uplink.settings.password),
            settings=config.model_update,
            watched=self._watched_classes,
        )
        self.commands.install = self.models.submit
        self.guard = self._build_guard()
        self.uplink.on_command = self.commands.handle
        self.evidence_dir = config.data_dir / "evidence"
        self.evidence_queue = EvidenceQueue(config.data_dir / "evidence-queue.db")
        self.uploader: EvidenceUploader | None = None
        if config.cloud_api is not None:
            self.uploader = EvidenceUploader(
                self.evidence_queue,
                config.cloud_api,
                username,
                self.uplink.settings.password,
            )
        self.heartbeat_s = config.heartbeat_s or self.place.gateway.heartbeat_s
        self.video: VideoGateway | None = None
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._reload_lock = threading.Lock()

    # -- the seams ---------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Hand an event to the cloud: durable in the outbox when this returns.

        The video pipeline calls this (``CameraPipeline(..., emit=agent.emit)``). An
        e-bike in an elevator is answered on the spot first (edge.elevator_guard).
        """
        self.guard.emit(event)

    def _store(self, event: Event) -> None:
        # evidence files are queued for upload first, so a crash in between loses none
        self.evidence_queue.add(event, self.evidence_dir)
        self.outbox.append(event)

    def _build_guard(self) -> ElevatorGuard:
        return ElevatorGuard(
            self.site,
            self.place,
            self._store,
            announce=self.commands.announce_local,
            publish=self._publish_local,
        )

    def _publish_local(self, topic: str, payload: bytes, qos: int) -> str | None:
        local = self.local  # a config reload may swap it meanwhile
        if local is None:
            return "this gateway has no local broker configured (local_broker)"
        return local.publish(topic, payload, qos)

    def _watched_classes(self) -> set[str]:
        """What this gateway's cameras watch: a model lacking one of these is refused."""
        return {c for camera in self.place.gateway.cameras for c in camera.watched_classes()}

    def _on_sample(self, reading: Reading) -> None:
        guard = getattr(self, "guard", None)  # the hub is built before the guard
        if guard is not None:
            guard.on_sample(reading)

    def _sink(self, items: Sequence[Event | Reading]) -> None:
        self.outbox.append_many(list(items))

    def _recheck(self, cmd: Recheck) -> ReplyDetail | None:
        """A recheck's verdict: ``present`` — is ``cmd.kind`` (or, without a kind, any
        condition) still raised on the camera zone or sensor? None: not ours to judge."""
        if self.video is not None:
            active = self.video.active_kinds(cmd.source, cmd.zone)
            if active is not None:
                return {
                    "present": (cmd.kind in active) if cmd.kind else bool(active),
                    "camera": self.video.cameras_state().get(cmd.source, "offline"),
                }
        active = self.hub.active_kinds(cmd.source)
        reading = self.hub.last_reading(cmd.source)
        if active is None or reading is None:
            return None
        detail: ReplyDetail = {"present": (cmd.kind in active) if cmd.kind else bool(active)}
        detail.update({f"value_{k}"[:63]: v for k, v in reading.values.items()})
        detail["age_s"] = round(time.time() - reading.ts.timestamp(), 3)
        if reading.faults:
            detail["faults"] = ",".join(reading.faults)[:200]
        return detail

    # -- health ------------------------------------------------------------------------

    def status(self) -> Status:
        video = self.video  # a config reload may swap it meanwhile
        cameras = video.cameras_state() if video is not None else {}
        running = self.models.running  # what the cameras run, or will from their next frame
        model = running.ref if running is not None else None
        return Status(
            state=GatewayState.ONLINE,
            software=f"microbrain {__version__}",
            epoch=self.outbox.epoch,
            uptime_s=time.monotonic() - self.started,
            health=collect_health(
                self.outbox,
                self.config.data_dir,
                sensors_silent=self.hub.silent_sensors(),
                cameras=cameras,
                model=model,
                model_serial=running.serial if running is not None else None,
                rejected=self._rejected_before_reload + self.hub.rejected,
            ),
        )

    # -- inputs: sensors and cameras, rebuilt by a config reload ------------------------

    def _build_sensors(self, previous: SensorHub | None = None) -> None:
        hub = SensorHub(self.site, self.place, self._sink, self.config.reading_min_interval_s)
        if previous is not None:
            hub.carry_over(previous)  # unchanged sensors keep their raised conditions
        hub.on_sample = self._on_sample
        self.hub = hub
        self.local = None
        lb = self.config.local_broker
        if lb is not None and self.place.gateway.sensors:
            self.local = LocalSensorClient(
                self.hub,
                lb.host,
                lb.port,
                username=lb.username,
                password=self._local_password,
                client_id=f"mb-sensors-{self.place.gateway.id}",
                keepalive_s=lb.keepalive_s,
            )

    def _stop_inputs(self) -> None:
        if self.video is not None:
            self.video.stop()
            self.video = None
        if self.local is not None:
            self.local.stop()

    def reload(self) -> ReplyDetail:
        """Re-read the site file and restart this gateway's cameras and sensors with it.

        The uplink, outbox and credentials stay as they are (changing those needs a
        restart). A file that does not validate changes nothing: the error goes back
        to the cloud in the command's reply.
        """
        site = load_site(self.config.site)  # SiteError: nothing changes
        place = site.gateway(self.config.gateway)  # KeyError: nothing changes
        if place.path != self.path:
            raise ReloadError(
                f"the site now puts this gateway at {place.path}, not {self.path}; "
                "its topics and credentials change: restart the agent"
            )
        with self._reload_lock:
            if self._stop.is_set():
                # shutdown has stopped (or is about to stop) the inputs: restarting them
                # now would leave cameras and a sensor client running past the end
                raise ReloadError("the gateway is stopping")
            self._stop_inputs()
            self._rejected_before_reload += self.hub.rejected
            self.site, self.place = site, place
            self._build_sensors(previous=self.hub)
            self.guard = self._build_guard()
            if self.local is not None:
                self.local.start()
            video_error = self._start_video()
        log.info(
            "config reloaded: %d camera(s), %d sensor(s)",
            len(place.gateway.cameras),
            len(place.gateway.sensors),
        )
        detail: ReplyDetail = {
            "cameras": len(place.gateway.cameras),
            "sensors": len(place.gateway.sensors),
        }
        if video_error is not None:
            detail["video_error"] = video_error[:200]  # sensors run; the cameras do not
        return detail

    # -- lifecycle ---------------------------------------------------------------------

    def _start_video(self) -> str | None:
        """Start the cameras; the reason when they could not start, else None."""
        cameras = list(self.place.gateway.cameras)
        if not self.config.video or not cameras:
            return None
        try:
            from edge.video.evidence import EvidenceStore
            from edge.video.runner import Playback, VideoGateway

            # the model the registry installed, if one is trusted and intact; else the site's
            detector = self.models.boot(self.place.gateway.detector, self.site_dir)
            self.video = VideoGateway(
                cameras,
                detector,
                self.emit,
                EvidenceStore(self.evidence_dir),
                base=self.site_dir,
                playback=Playback(realtime=True, loop=self.config.loop_recordings),
            )
            self.video.start()
            log.info("video: %d camera(s) running", len(cameras))
        except Exception as err:  # cameras failing must not take the sensors and uplink down
            log.exception("video could not start; sensors and uplink keep running")
            self.video = None
            return f"video could not start: {type(err).__name__}: {err}"
        return None

    def _swap_model(self) -> None:
        """The model manager installed a model: every camera runs it from its next frame.
        Under the reload lock, so a reload that restarts the cameras meanwhile starts them
        with it (it reads ``models.running`` too)."""
        with self._reload_lock:
            running = self.models.running
            if self.video is not None and running is not None:
                self.video.swap_detector(running.detector)

    def _between_frames(self) -> None:
        video = self.video
        if video is not None:
            video.wait_between_frames()

    def start(self) -> None:
        if self.config.metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(self.config.metrics_port, addr="127.0.0.1")
            log.info("metrics on http://127.0.0.1:%d/metrics", self.config.metrics_port)
        self.uplink.start()
        if self.uploader is not None:
            self.uploader.start()
        if self.local is not None:
            self.local.start()
        self._start_video()

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, install_signals: bool = True) -> None:
        """Run until :meth:`stop` or SIGTERM/SIGINT."""
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        log.info("gateway %s running; outbox holds %d item(s)", self.path, self.outbox.depth)
        next_beat = time.monotonic()
        next_silence = time.monotonic() + SILENCE_CHECK_S
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    self.uplink.publish_status(self.status())
                    next_beat = now + self.heartbeat_s
                if now >= next_silence:
                    self.hub.check_silence()
                    next_silence = now + SILENCE_CHECK_S
                self._stop.wait(min(next_beat, next_silence) - time.monotonic())
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        with self._reload_lock:
            self._stop_inputs()
        self.models.stop()
        if self.uploader is not None:
            self.uploader.stop()
        self.uplink.stop()
        self.outbox.close()
        self.evidence_queue.close()
        log.info("gateway %s stopped", self.path)
