"""Commands from the cloud on ``cmd/<name>``: decode, check, run, reply.

Anything that does not decode (unknown name, malformed JSON, missing fields) or has
expired gets a :class:`Reply` with ``ok=false`` and the reason, and is never executed.
``ack`` is the cloud's receipt for stored sequence ranges: the outbox forgets them, and
no reply is sent (acks are frequent and need none).
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Counter

from edge.outbox import Outbox
from microbrain.protocol import (
    Ack,
    Announce,
    Channel,
    ConfigReload,
    GatewayPath,
    ModelInstall,
    ProtocolError,
    Recheck,
    Reply,
    decode,
    is_valid_id,
    utc_now,
)

log = logging.getLogger(__name__)

COMMANDS = Counter("mb_edge_commands_total", "commands received", ["name", "outcome"])

ReplySink = Callable[[Reply], None]
# what a reply's detail holds (the wire's scalars)
ReplyDetail = dict[str, float | int | bool | str]

ANNOUNCE_QUEUE = 8  # announcements waiting for the speaker; more are refused, not piled up
KEEP_ANNOUNCEMENTS = 50  # newest WAV files kept in out_dir; older ones are deleted


class AnnounceError(RuntimeError):
    """The announcement could not be played (no clip, no TTS, the player failed)."""


@dataclass
class Announcer:
    """Plays a voice warning: a prepared clip or offline TTS (espeak-ng), into a WAV file
    in ``out_dir`` and then through ``player`` (e.g. ``["aplay", "-q"]``) when set."""

    out_dir: Path
    clips_dir: Path | None = None
    player: tuple[str, ...] = ()
    voice: str = "cmn"
    speakers: tuple[str, ...] = ()
    keep: int = KEEP_ANNOUNCEMENTS
    _count: int = field(default=0, repr=False)

    def announce(self, cmd: Announce) -> Path:
        if cmd.speaker is not None and self.speakers and cmd.speaker not in self.speakers:
            raise AnnounceError(
                f"no speaker {cmd.speaker!r} on this gateway (known: {', '.join(self.speakers)})"
            )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._count += 1
        out = self.out_dir / f"announce-{cmd.id}.wav"
        if cmd.clip is not None:
            clip = (self.clips_dir / f"{cmd.clip}.wav") if self.clips_dir else None
            if clip is None or not clip.is_file():
                raise AnnounceError(f"no prepared clip {cmd.clip!r}")
            shutil.copyfile(clip, out)
        else:
            tts = shutil.which("espeak-ng")
            if tts is None:
                raise AnnounceError(
                    "no text-to-speech on this gateway (install espeak-ng) and no clip given"
                )
            # argv, not a shell: the text is the cloud's, never interpreted
            done = subprocess.run(
                [tts, "-v", self.voice, "-w", str(out), "--", cmd.text or ""],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if done.returncode != 0 or not out.exists():
                why = done.stderr.decode(errors="replace")[:200]
                raise AnnounceError(f"espeak-ng failed: {why}")
        for _ in range(cmd.repeat if self.player else 0):
            played = subprocess.run(
                [*self.player, str(out)], capture_output=True, timeout=120, check=False
            )
            if played.returncode != 0:
                raise AnnounceError(
                    f"player {self.player[0]} failed: "
                    f"{played.stderr.decode(errors='replace')[:200]}"
                )
        self._prune(out)
        return out

    def _prune(self, newest: Path) -> None:
        """Keep the newest ``keep`` announcement WAVs: one per command would fill the disk."""

        def age(p: Path) -> tuple[int, str]:
            try:
                return p.stat().st_mtime_ns, p.name
            except FileNotFoundError:
                return 0, p.name

        files = sorted(
            (p for p in self.out_dir.glob("announce-*.wav") if p != newest), key=age, reverse=True
        )
        for old in files[max(0, self.keep - 1) :]:
            old.unlink(missing_ok=True)


class CommandHandler:
    """Route one ``cmd/<name>`` message; give it to the uplink as its ``on_command``."""

    def __init__(
        self,
        path: GatewayPath,
        outbox: Outbox,
        reply: ReplySink,
        announcer: Announcer | None = None,
        recheck: Callable[[Recheck], ReplyDetail | None] | None = None,
        reload: Callable[[], ReplyDetail] | None = None,
        announce_queue: int = ANNOUNCE_QUEUE,
        install: Callable[[ModelInstall], None] | None = None,
    ) -> None:
        self.path = path
        self.outbox = outbox
        self.reply = reply
        self.announcer = announcer
        self.recheck = recheck or (lambda cmd: None)
        self.reload = reload
        # the model manager (edge.model_update): queues the install and answers through
        # reply_model from its own worker
        self.install = install
        self.acked = 0
        # announcements take a moment: never on the MQTT thread; one worker plays them in
        # order from a bounded queue (a thread per command let a flood pile up threads).
        # The flag says whether the cloud asked (and waits for a reply) or the gateway did.
        self._announcements: queue.Queue[tuple[Announce, bool]] = queue.Queue(
            maxsize=announce_queue
        )
        self._announce_worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()

    def handle(self, topic: str, raw: bytes) -> None:
        name = topic.rsplit("/", 1)[-1] if topic.startswith(f"{self.path.prefix}/cmd/") else None
        try:
            message = decode(topic, raw)
            if message.topic.gateway != self.path or message.topic.channel != Channel.CMD:
                raise ProtocolError(f"not a command for {self.path}", field="topic")
        except ProtocolError as err:
            self._refuse(name, None, str(err))
            return
        cmd = message.payload
        if not isinstance(cmd, Ack | Announce | Recheck | ConfigReload | ModelInstall):
            self._refuse(name, None, f"a {type(cmd).__name__} is not a command")
            return
        if cmd.expires is not None and cmd.expires < utc_now():
            self._refuse(cmd.name, cmd.id, f"expired at {cmd.expires.isoformat()}")
            return
        if isinstance(cmd, Ack):
            self.acked += self.outbox.ack(cmd.ranges, epoch=cmd.epoch)
            COMMANDS.labels(name="ack", outcome="ok").inc()
        elif isinstance(cmd, Announce):
            self._queue_announce(cmd)
        elif isinstance(cmd, Recheck):
            self._recheck(cmd)
        elif isinstance(cmd, ConfigReload):
            # stopping cameras takes a moment: never on the MQTT thread
            threading.Thread(target=self._reload, args=(cmd,), daemon=True).start()
        elif isinstance(cmd, ModelInstall):
            if self.install is None:
                self._refuse(cmd.name, cmd.id, "this gateway has no model manager")
            else:
                self.install(cmd)

    def reply_model(self, reply: Reply) -> None:
        """Send the model manager's answer to a ``cmd/model`` (counted like the others)."""
        COMMANDS.labels(name="model", outcome="ok" if reply.ok else "refused").inc()
        if not reply.ok:
            log.warning("command model refused: %s", reply.reason)
        self.reply(reply)

    def _queue_announce(self, cmd: Announce) -> None:
        refused = self._enqueue(cmd, from_cloud=True)
        if refused is not None:
            self._refuse(cmd.name, cmd.id, refused)

    def announce_local(self, cmd: Announce) -> str | None:
        """A warning the gateway decided on itself (edge.elevator_guard): queued behind
        the cloud's, with no reply to the cloud; None when queued, else why not."""
        refused = self._enqueue(cmd, from_cloud=False)
        if refused is not None:
            COMMANDS.labels(name="announce_local", outcome="refused").inc()
        return refused

    def _enqueue(self, cmd: Announce, *, from_cloud: bool) -> str | None:
        if self.announcer is None:
            return "this gateway has no audio output configured"
        with self._worker_lock:
            if self._announce_worker is None:
                self._announce_worker = threading.Thread(
                    target=self._announce_loop, name="announcer", daemon=True
                )
                self._announce_worker.start()
        try:
            self._announcements.put_nowait((cmd, from_cloud))
        except queue.Full:
            return (
                f"busy: {self._announcements.maxsize} announcements "
                "are already waiting; try again later"
            )
        return None

    def _announce_loop(self) -> None:
        while True:
            cmd, from_cloud = self._announcements.get()
            try:
                self._announce(cmd, from_cloud)
            except Exception:  # a bug on one announcement must not stop the rest
                log.exception("announcement %s failed", cmd.id)

    def _announce(self, cmd: Announce, from_cloud: bool = True) -> None:
        assert self.announcer is not None
        try:
            out = self.announcer.announce(cmd)
        except (AnnounceError, OSError, subprocess.SubprocessError) as err:
            if from_cloud:
                self._refuse(cmd.name, cmd.id, str(err))
            else:
                COMMANDS.labels(name="announce_local", outcome="failed").inc()
                log.error("voice warning %s failed: %s", cmd.id, err)
            return
        if from_cloud:
            self._ok(cmd.name, cmd.id, {"file": out.name, "repeat": cmd.repeat})
        else:
            COMMANDS.labels(name="announce_local", outcome="ok").inc()
            log.info("voice warning played: %s", out.name)

    def _reload(self, cmd: ConfigReload) -> None:
        if self.reload is None:
            self._refuse(cmd.name, cmd.id, "this gateway cannot reload its configuration")
            return
        try:
            detail = self.reload()
        except Exception as err:  # noqa: BLE001 - any failure goes back to the cloud as the reason
            self._refuse(cmd.name, cmd.id, f"config not reloaded: {err}")
            return
        self._ok(cmd.name, cmd.id, detail)

    def _recheck(self, cmd: Recheck) -> None:
        values = self.recheck(cmd)
        if values is None:
            self._refuse(
                cmd.name,
                cmd.id,
                f"recheck of {cmd.source!r} is not available: "
                "not a running camera or a sensor with a reading on this gateway",
            )
            return
        self._ok(cmd.name, cmd.id, values)

    def _ok(self, name: str, command_id: str, detail: ReplyDetail) -> None:
        COMMANDS.labels(name=name, outcome="ok").inc()
        self.reply(Reply(command_id=command_id, name=name, ok=True, detail=detail))

    def _refuse(self, name: str | None, command_id: str | None, reason: str) -> None:
        name = name if name is not None and is_valid_id(name) else "unknown"
        COMMANDS.labels(
            name=name
            if name in ("announce", "recheck", "config_reload", "model", "ack")
            else "other",
            outcome="refused",
        ).inc()
        reason = re.sub(r"[\x00-\x1f\x7f]", "?", reason)  # the reason may quote hostile input
        log.warning("command %s refused: %s", name, reason)
        self.reply(Reply(command_id=command_id, name=name, ok=False, reason=reason[:500]))
