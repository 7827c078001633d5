"""ModelManager: a signed model from the registry → verified, tested, swapped in, or refused.

One worker thread takes ``cmd/model`` installs in order (never the MQTT thread; a few may
wait, more are refused). Each install:

1. checks the ed25519 signature over the manifest's exact text with the configured key,
   then its expiry, its minimum gateway version and its serial against the highest this
   gateway ever trusted (equal and running: answered "installed" again, harmlessly);
2. takes the file from the models folder if a file with its sha256 is already there
   (a signed rollback to the previous model), else downloads it (resumable, retried,
   bounded by the manifest's size) and checks its size and sha256;
3. loads it in a fresh detector and smoke-tests it on a reference frame: the classes the
   manifest signed, detections of the right type, latency within budget;
4. writes the trust state (fsynced) *before* the model runs, then hands it to the cameras,
   which swap between two frames. The previous model's file stays for a restore.

Anything that fails leaves the running model as it is; the reply says why and
``mb_edge_model_installs_total{outcome}`` counts it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import queue
import re
import statistics
import threading
import time
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import Counter, Gauge, Histogram

from edge.config import ModelUpdateConfig
from edge.model_update.download import Credentials, DownloadError, download, part_path
from edge.model_update.trust import TrustedModel, TrustState, TrustStateError, TrustStore
from microbrain import __version__
from microbrain.protocol import ModelInstall, ModelManifest, ModelRef, Reply, utc_now
from microbrain.signing import SignatureError, load_public_key, verify_manifest
from microbrain.site.cameras import DetectorConfig
from microbrain.site.classes import SECOND_STAGE_INPUTS, VERDICT_CLASSES

if TYPE_CHECKING:  # OpenCV and onnxruntime load with the cameras, not before
    import numpy as np

    from edge.video.detections import Detections
    from edge.video.detectors import Detector

log = logging.getLogger(__name__)

INSTALLS = Counter(
    "mb_edge_model_installs_total", "model installs from the cloud, by outcome", ["outcome"]
)
STARTUPS = Counter(
    "mb_edge_model_startup_total",
    "the installed model at agent start: ok, or why the site's detector runs instead",
    ["outcome"],
)
SERIAL = Gauge("mb_edge_model_serial", "signed serial of the running model (0: the site's own)")
INSTALL_SECONDS = Histogram(
    "mb_edge_model_install_seconds",
    "from the command to the swap (download, checks, load, smoke test)",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)

INSTALL_QUEUE = 4  # installs waiting behind the one that runs; more are refused
SMOKE_RUNS = 3


class InstallError(Exception):
    """Why an install did not happen: ``state`` "refused" (the model or its manifest is
    not acceptable) or "failed" (it could not be fetched, loaded or tested)."""

    def __init__(self, reason: str, outcome: str, state: str = "refused") -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.state = state


@dataclass(frozen=True)
class RunningModel:
    """The model the cameras run, with its signed serial (None: the site's detector) and
    its median latency on the reference frame (the next smoke test's yardstick)."""

    detector: Detector
    serial: int | None
    smoke_ms: float

    @property
    def ref(self) -> ModelRef:
        return ModelRef(name=self.detector.name[:100], version=self.detector.version[:64])


def version_tuple(text: str) -> tuple[int, ...]:
    """``"0.10.2"`` → (0, 10, 2); suffixes after the digits (``rc1``) are ignored."""
    parts = []
    for piece in text.strip().split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            raise ValueError(f"not a version: {text!r}")
        parts.append(int(match.group()))
    return tuple(parts)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def reference_frame() -> np.ndarray:
    """The smoke test's frame: a package-shipped sample picture (a synthetic one when
    none is installed), read once."""
    import cv2
    import numpy as np

    from microbrain.resources import ResourceMissing, sample

    for name in ("dog.jpg", "person.jpg"):
        try:
            image = cv2.imread(str(sample(name)))
        except ResourceMissing:
            continue
        if image is not None:
            return image
    log.warning("no sample picture installed: the model smoke test uses a synthetic frame")
    ramp = np.linspace(0, 255, 640, dtype=np.uint8)
    return np.dstack([np.tile(ramp, (480, 1))] * 3)


def missing_classes(watched: set[str], classes: tuple[str, ...]) -> list[str]:
    """The classes the cameras watch that a model with ``classes`` could never report:
    an ``ebike`` / ``pedal_bike`` is there when the model names it or names a bicycle or
    motorcycle for the second stage to judge."""
    have = set(classes)
    judged = bool(have.intersection(SECOND_STAGE_INPUTS))
    return sorted(c for c in watched if c not in have and not (c in VERDICT_CLASSES and judged))


def _clean(reason: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", "?", reason)[:500]  # it may quote hostile input


class ModelManager:
    """The gateway's models: :meth:`boot` gives the cameras theirs; :meth:`submit` takes
    a ``cmd/model`` and answers through ``reply``; ``on_swap`` is called (from the
    worker) after a new model became :attr:`running`, to hand it to the cameras."""

    def __init__(
        self,
        directory: Path,
        public_key: Ed25519PublicKey | None,
        *,
        reply: Callable[[Reply], None],
        on_swap: Callable[[], None] = lambda: None,
        gap: Callable[[], object] = lambda: None,
        cloud_api: str | None = None,
        credentials: Credentials | None = None,
        settings: ModelUpdateConfig | None = None,
        key_problem: str | None = None,
        now: Callable[[], datetime] = utc_now,
        queue_size: int = INSTALL_QUEUE,
        watched: Callable[[], set[str]] = set,
    ) -> None:
        self.directory = directory
        # the classes this gateway's cameras watch now (a config reload may change them)
        self.watched = watched
        self.public_key = public_key
        self.key_problem = key_problem
        self.reply = reply
        self.on_swap = on_swap
        # waits for a gap between the cameras' frames: the load and each smoke-test
        # inference start right after a frame, not beside one (VideoGateway)
        self.gap = gap
        self.cloud_api = cloud_api.rstrip("/") + "/" if cloud_api else None
        self.credentials = credentials
        self.settings = settings or ModelUpdateConfig()
        self.now = now
        self.store = TrustStore(directory)
        self.state_error: str | None = None
        try:
            self.state = self.store.load()
        except TrustStateError as err:
            log.error("%s", err)
            self.state, self.state_error = TrustState(), str(err)
        self.running: RunningModel | None = None
        self._site: tuple[DetectorConfig, Path | None] = (DetectorConfig(), None)
        self._lock = threading.Lock()  # the trust state and ``running``
        self._queue: queue.Queue[ModelInstall | None] = queue.Queue(maxsize=queue_size)
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def from_key_file(
        cls, key_file: Path | None, directory: Path, **kwargs: object
    ) -> ModelManager:
        """A manager whose key comes from ``key_file`` (the config's ``model_key``); a key
        that cannot be read refuses every install, saying why, and the agent runs on."""
        key, problem = None, None
        if key_file is not None:
            try:
                key = load_public_key(key_file)
            except SignatureError as err:
                problem = str(err)
                log.error("model_key: %s; model installs are refused until it is fixed", err)
        return cls(directory, key, key_problem=problem, **kwargs)  # type: ignore[arg-type]

    # -- start -----------------------------------------------------------------------

    def boot(self, site: DetectorConfig, base: Path | None) -> Detector:
        """The detector the cameras start with: the installed model when the trust state
        has one and its file is intact, else the site's configured detector. An installed
        model outlives a config reload (the site's detector is rebuilt, it may change)."""
        from edge.video.detectors import load_detector

        with self._lock:
            self._site = (site, base)
            if self.running is not None and self.running.serial is not None:
                return self.running.detector
            trusted = self.state.current
            if trusted is not None:
                try:
                    self.running = self._start_trusted(trusted)
                    STARTUPS.labels("ok").inc()
                    SERIAL.set(self.running.serial or 0)
                    return self.running.detector
                except InstallError as err:
                    STARTUPS.labels(err.outcome).inc()
                    log.error(
                        "the installed model cannot run (%s); running the site's detector "
                        "until the registry sends a model again",
                        err,
                    )
            detector = load_detector(site, base)
            self.running = RunningModel(detector, None, _latency_ms(detector)[0])
            SERIAL.set(0)
            return detector

    def _start_trusted(self, trusted: TrustedModel) -> RunningModel:
        try:
            manifest = trusted.parsed
        except ValueError as err:
            raise InstallError(f"its manifest does not parse: {err}", "corrupt") from None
        path = self.directory / trusted.file
        if not path.is_file():
            raise InstallError(f"its file {path} is missing", "missing")
        if sha256_of(path) != manifest.sha256:
            raise InstallError(f"its file {path} does not match its sha256", "tampered")
        if self.public_key is not None:
            try:
                verify_manifest(self.public_key, trusted.manifest, trusted.signature)
            except SignatureError as err:
                raise InstallError(str(err), "bad_signature") from None
        detector = self._load(path, manifest)
        # no latency budget here: it passed at install, and a busy start is no reason
        # to fall back to an older model
        ms = self._smoke(detector, manifest, None, check_latency=False)
        return RunningModel(detector, manifest.serial, ms)

    # -- installs --------------------------------------------------------------------

    def submit(self, cmd: ModelInstall) -> None:
        """Queue an install (returns at once); refused at once when too many wait."""
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._loop, name="model-install", daemon=True
                )
                self._worker.start()
        try:
            self._queue.put_nowait(cmd)
        except queue.Full:
            INSTALLS.labels("busy").inc()
            self.reply(
                self._refusal(
                    cmd,
                    InstallError(
                        f"busy: {self._queue.maxsize} model installs are already waiting; "
                        "the registry resends it later",
                        "busy",
                        "failed",
                    ),
                    None,
                )
            )

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):  # a full queue: the worker sees _stop
            self._queue.put_nowait(None)
        if self._worker is not None:
            self._worker.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            cmd = self._queue.get()
            if cmd is None:
                return
            try:
                reply = self.install(cmd)
            except Exception:  # a bug on one install must not stop the next
                log.exception("model install %s crashed", cmd.id)
                continue
            self.reply(reply)

    def install(self, cmd: ModelInstall) -> Reply:
        """Run one install to its end (the worker calls this); the reply to send."""
        started = time.monotonic()
        serial: int | None = None
        path: Path | None = None
        try:
            manifest = self._verify(cmd)
            serial = manifest.serial
            self._check(cmd, manifest)
            running = self.running
            if (
                running is not None
                and running.serial == manifest.serial
                and self.state.current is not None
                and self.state.current.manifest == cmd.manifest
            ):
                INSTALLS.labels("unchanged").inc()
                return self._installed(cmd, manifest, running.smoke_ms)
            path = self._obtain(cmd, manifest)
            detector = self._load(path, manifest)
            smoke_ms = self._smoke(detector, manifest, running)
            self._commit(cmd, manifest, path, detector, smoke_ms)
        except InstallError as err:
            INSTALLS.labels(err.outcome).inc()
            log.warning("model install %s %s: %s", cmd.id, err.state, err)
            self._discard(path)
            return self._refusal(cmd, err, serial)
        except Exception as err:  # whatever broke, the old model runs on
            log.exception("model install %s failed", cmd.id)
            self._discard(path)
            INSTALLS.labels("error").inc()
            failure = InstallError(
                f"install failed: {type(err).__name__}: {err}", "error", "failed"
            )
            return self._refusal(cmd, failure, serial)
        INSTALLS.labels("installed").inc()
        INSTALL_SECONDS.observe(time.monotonic() - started)
        log.info(
            "model %s %s (serial %d) installed in %.1f s; smoke test %.1f ms",
            manifest.name,
            manifest.version,
            manifest.serial,
            time.monotonic() - started,
            smoke_ms,
        )
        try:
            self.on_swap()
        except Exception:  # the model is trusted and running here; the cameras log why not
            log.exception("model %s: handing it to the cameras failed", manifest.name)
        return self._installed(cmd, manifest, smoke_ms)

    def _verify(self, cmd: ModelInstall) -> ModelManifest:
        if self.state_error is not None:
            raise InstallError(self.state_error, "trust_state")
        if self.public_key is None:
            why = f" ({self.key_problem})" if self.key_problem else ""
            raise InstallError(
                f"this gateway has no model key{why}: set model_key in its config to a file "
                "holding the registry's public key (GET /api/models/key)",
                "no_key",
            )
        try:
            manifest = verify_manifest(self.public_key, cmd.manifest, cmd.signature)
        except SignatureError as err:
            raise InstallError(str(err), "bad_signature") from None
        return manifest

    def _check(self, cmd: ModelInstall, manifest: ModelManifest) -> None:
        """Refuse a validly signed manifest that is expired, too new for this gateway's
        software, or not newer than what this gateway trusts."""
        now = self.now()
        if manifest.expires <= now:
            raise InstallError(
                f"the manifest of {manifest.name} {manifest.version} expired at "
                f"{manifest.expires.isoformat()}; the registry must sign it again",
                "expired",
            )
        try:
            too_old = version_tuple(manifest.min_gateway_version) > version_tuple(__version__)
        except ValueError as err:
            raise InstallError(f"min_gateway_version: {err}", "gateway_too_old") from None
        if too_old:
            raise InstallError(
                f"{manifest.name} {manifest.version} needs microbrain "
                f"{manifest.min_gateway_version} or newer; this gateway runs {__version__}: "
                "update the gateway's software first",
                "gateway_too_old",
            )
        missing = missing_classes(self.watched(), manifest.classes)
        if missing:
            raise InstallError(
                f"{manifest.name} {manifest.version} has no class {', '.join(missing)}, "
                "which this gateway's cameras watch: their rules would go blind; train the "
                "model with it, or change the rules first",
                "missing_classes",
            )
        highest = self.state.highest_serial
        same = self.state.current is not None and self.state.current.manifest == cmd.manifest
        if manifest.serial < highest or (manifest.serial == highest and not same):
            raise InstallError(
                f"serial {manifest.serial} is not newer than {highest}, the highest this "
                "gateway has trusted (an old manifest replayed?); going back to an older "
                "model takes a rollback manifest the registry signs with a new serial",
                "not_newer",
            )

    def _url(self, cmd: ModelInstall) -> tuple[str, Credentials | None]:
        url = cmd.url
        if not re.match(r"^https?://", url):
            if self.cloud_api is None:
                raise InstallError(
                    "the model's URL is relative and this gateway has no cloud_api: set "
                    "cloud_api in its config",
                    "download_failed",
                    "failed",
                )
            url = urllib.parse.urljoin(self.cloud_api, url.lstrip("/"))
        # our password goes only to our own cloud, never to a host a command names
        same_origin = self.cloud_api is not None and _origin(url) == _origin(self.cloud_api)
        return url, self.credentials if same_origin else None

    def _obtain(self, cmd: ModelInstall, manifest: ModelManifest) -> Path:
        final = self.directory / f"{manifest.sha256}.model"
        if final.is_file():
            if sha256_of(final) == manifest.sha256:
                log.info("model %s: file already here (%s), no download", manifest.name, final)
                return final
            final.unlink()
        url, credentials = self._url(cmd)
        s = self.settings
        try:
            part = download(
                url,
                final,
                manifest.bytes,
                credentials,
                timeout_s=s.download_timeout_s,
                attempts=s.download_attempts,
                backoff_s=s.retry_backoff_s,
                stop=self._stop,
            )
        except DownloadError as err:
            if err.outcome == "too_large":
                part_path(final).unlink(missing_ok=True)
                raise InstallError(str(err), "bad_size") from None
            raise InstallError(str(err), "download_failed", "failed") from None
        size = part.stat().st_size
        if size != manifest.bytes:
            part.unlink()
            raise InstallError(
                f"the file has {size} bytes, its signed manifest says {manifest.bytes}",
                "bad_size",
            )
        digest = sha256_of(part)
        if digest != manifest.sha256:
            part.unlink()  # a corrupt part must not be resumed
            raise InstallError(
                f"the file's sha256 {digest[:16]}… is not the signed {manifest.sha256[:16]}…: "
                "it was changed on the way or on the server",
                "bad_hash",
            )
        os.replace(part, final)
        return final

    def _detector_config(self, path: Path, manifest: ModelManifest) -> DetectorConfig:
        """The site's detector settings (threshold, NMS, threads) with the new model."""
        site, base = self._site
        graph = None
        if manifest.detector_type == "opencv_tf":
            if site.config is not None:
                graph = str(site.config if base is None else base / site.config)
            else:
                from microbrain.resources import ResourceMissing, default_model

                try:
                    graph = str(default_model()[1])
                except ResourceMissing as err:
                    raise InstallError(str(err), "load_failed", "failed") from None
        return site.model_copy(
            update={
                "type": manifest.detector_type,
                "model": str(path),
                "config": graph,
                "input_size": manifest.input_size,
            }
        )

    def _load(self, path: Path, manifest: ModelManifest) -> Detector:
        from edge.video.detectors import DetectorError, load_detector

        try:
            self.gap()
            detector = load_detector(self._detector_config(path, manifest))
        except DetectorError as err:
            # the loader runs the model on a blank frame: a wrong output shape shows here
            raise InstallError(
                f"the model failed its smoke test: {err}", "smoke_failed", "failed"
            ) from None
        detector.name = manifest.name
        detector.version = manifest.version
        return detector

    def _smoke(
        self,
        detector: Detector,
        manifest: ModelManifest,
        running: RunningModel | None,
        *,
        check_latency: bool = True,
    ) -> float:
        """Median latency on the reference frame, after checking classes and outputs."""
        from edge.video.detections import Detections
        from edge.video.detectors import DetectorError

        if tuple(detector.class_names) != tuple(manifest.classes):
            raise InstallError(
                f"the model's classes {list(detector.class_names)[:20]} are not the signed "
                f"manifest's {list(manifest.classes)[:20]}",
                "bad_classes",
            )
        try:
            ms, found = _latency_ms(detector, _turns_with(running), self.gap)
        except (DetectorError, ValueError) as err:
            raise InstallError(
                f"the model failed its smoke test: {err}", "smoke_failed", "failed"
            ) from None
        if not isinstance(found, Detections) or tuple(found.class_names) != manifest.classes:
            raise InstallError(
                "the model failed its smoke test: its detections are not of the signed classes",
                "smoke_failed",
                "failed",
            )
        s = self.settings
        budget = s.smoke_latency_floor_ms
        if running is not None:
            budget = max(budget, s.smoke_latency_factor * running.smoke_ms)
        if check_latency and ms > budget:
            raise InstallError(
                f"the model failed its smoke test: {ms:.0f} ms per frame, over the budget "
                f"of {budget:.0f} ms ({s.smoke_latency_factor:g} × the running model's, at "
                f"least {s.smoke_latency_floor_ms:g} ms; model_update in the gateway config)",
                "too_slow",
                "failed",
            )
        return ms

    def _commit(
        self,
        cmd: ModelInstall,
        manifest: ModelManifest,
        path: Path,
        detector: Detector,
        smoke_ms: float,
    ) -> None:
        trusted = TrustedModel(manifest=cmd.manifest, signature=cmd.signature, file=path.name)
        with self._lock:
            old = self.state
            previous = (
                old.current if old.current and old.current.file != path.name else old.previous
            )
            new = TrustState(
                highest_serial=max(old.highest_serial, manifest.serial),
                current=trusted,
                previous=previous,
            )
            try:
                self.store.save(new)  # on disk before the model runs
            except TrustStateError as err:
                raise InstallError(str(err), "trust_failed", "failed") from None
            self.state = new
            self.running = RunningModel(detector, manifest.serial, smoke_ms)
            SERIAL.set(manifest.serial)
            self._prune({trusted.file} | ({previous.file} if previous else set()))

    def _discard(self, path: Path | None) -> None:
        """Delete a downloaded file that did not pass, unless it is one we run or keep."""
        kept = {t.file for t in (self.state.current, self.state.previous) if t is not None}
        if path is not None and path.name not in kept:
            path.unlink(missing_ok=True)

    def _prune(self, keep: set[str]) -> None:
        """Delete model files other than the current and the previous one, and partial
        downloads (an interrupted one of another model would never be resumed)."""
        for path in self.directory.glob("*.model*"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    # -- replies ---------------------------------------------------------------------

    def _installed(self, cmd: ModelInstall, manifest: ModelManifest, smoke_ms: float) -> Reply:
        detail: dict[str, float | int | bool | str] = {
            "state": "installed",
            "serial": manifest.serial,
            "model": manifest.name,
            "version": manifest.version,
            "smoke_ms": round(smoke_ms, 2),
        }
        if cmd.rollout is not None:
            detail["rollout"] = cmd.rollout
        return Reply(command_id=cmd.id, name="model", ok=True, detail=detail)

    def _refusal(self, cmd: ModelInstall, err: InstallError, serial: int | None) -> Reply:
        running = self.running
        detail: dict[str, float | int | bool | str] = {
            "state": err.state,
            "running_version": running.ref.version if running else "",
        }
        if serial is not None:
            detail["serial"] = serial
        if running is not None and running.serial is not None:
            detail["running_serial"] = running.serial
        if cmd.rollout is not None:
            detail["rollout"] = cmd.rollout
        return Reply(
            command_id=cmd.id, name="model", ok=False, reason=_clean(str(err)), detail=detail
        )


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _turns_with(running: RunningModel | None) -> AbstractContextManager[object]:
    """The running model's turn (its backend's ``exclusive()``: no inference of it runs
    while held), so that the smoke test's inferences take turns with the cameras' instead
    of running beside them: on a gateway's few cores two networks at once slow a camera's
    frame by more than one inference, turns by at most one."""
    exclusive = getattr(running.detector, "exclusive", None) if running is not None else None
    if callable(exclusive):
        return cast(AbstractContextManager[object], exclusive())
    return contextlib.nullcontext()


def _latency_ms(
    detector: Detector,
    turns: AbstractContextManager[object] | None = None,
    gap: Callable[[], object] = lambda: None,
) -> tuple[float, Detections]:
    """Median latency of a few inferences on the reference frame (ms), and the last
    one's detections; each inference inside ``turns`` (see :func:`_turns_with`)."""
    frame = reference_frame()
    times = []
    for _ in range(SMOKE_RUNS):
        gap()
        with turns or contextlib.nullcontext():
            t = time.perf_counter()
            found = detector.detect(frame)
            times.append((time.perf_counter() - t) * 1000)
        time.sleep(0.002)  # a camera waiting for the lock goes first
    return statistics.median(times), found
