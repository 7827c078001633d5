"""Train a YOLO detector with ultralytics, offline, and export it to ONNX for gateways.

``train`` writes ``OUT/model.pt`` (ultralytics' checkpoint) and ``OUT/model.json`` (what
it was trained from: the base, the dataset's sha256, its classes); ``export`` turns a
checkpoint into an ONNX file with dynamic input shapes (so a gateway can look at crops
around its zones) and writes microbrain's keys into its metadata beside ultralytics'
own (``names``, ``imgsz``, ``stride``), which edge/video/detectors/onnx_yolo.py reads.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models import offline
from models.datasets import DataSpec, dataset_sha256, image_files, load_data_yaml

# the ONNX metadata keys microbrain adds (ultralytics' own "version" is kept under its
# own key: the edge detector reports "version" as the model's)
META_VERSION = "version"
META_ULTRALYTICS = "ultralytics_version"
META_DATA_SHA256 = "training_data_sha256"
META_BASE = "base_model"
META_NAME = "microbrain_model"
SIDECAR_SUFFIX = ".json"
# the manifest's version is at most 64 characters, and the edge detector appends "-" and
# 12 hex digits of the file's sha256 to what the metadata says
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,47}")


class TrainingError(RuntimeError):
    """Training or export could not run; the message says why and what to change."""


@dataclass(frozen=True)
class TrainRecord:
    """What a checkpoint was trained from, kept beside it (``model.json``)."""

    base: str
    data: str
    data_sha256: str
    names: tuple[str, ...]
    epochs: int
    imgsz: int
    images: int
    seconds: float


# (epoch done, epochs, the losses and metrics ultralytics reports for it)
EpochCallback = Callable[[int, int, dict[str, float]], None]


def _quiet_ultralytics() -> None:
    # its per-batch logging fights the caller's progress bar; warnings still show
    logging.getLogger("ultralytics").setLevel(logging.WARNING)


def _check_dataset(spec: DataSpec) -> int:
    images = image_files(spec.train)
    if not images:
        raise TrainingError(f"{spec.path}: no images under {spec.train}")
    image_files(spec.val)
    return len(images)


def train(
    data: Path,
    base: str,
    out: Path,
    *,
    epochs: int = 50,
    imgsz: int = 320,
    batch: int = 16,
    device: str = "cpu",
    workers: int = 0,
    val: bool = True,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
) -> tuple[Path, TrainRecord]:
    """Train ``base`` (architecture yaml or local checkpoint) on ``data``; returns the
    checkpoint ``out/model.pt`` and what it was trained from (also in ``out/model.json``)."""
    resolved = offline.resolve_base(base)
    spec = load_data_yaml(data)
    count = _check_dataset(spec)
    digest = dataset_sha256(spec)
    offline.prepare()
    from ultralytics.models import YOLO

    offline.quiet_settings()
    _quiet_ultralytics()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = YOLO(resolved)

    def epoch_end(trainer: Any) -> None:
        if on_epoch is not None:
            metrics = {k: float(v) for k, v in (trainer.metrics or {}).items()}
            losses = trainer.label_loss_items(trainer.tloss, prefix="train")
            metrics.update({k: float(v) for k, v in losses.items()})
            # the final validation reports once more, one past the last epoch
            done = min(int(trainer.epoch) + 1, int(trainer.epochs))
            on_epoch(done, int(trainer.epochs), metrics)

    model.add_callback("on_fit_epoch_end", epoch_end)
    started = time.monotonic()
    try:
        model.train(
            data=str(spec.path.resolve()),
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device=device,
            workers=workers,
            val=val,
            seed=seed,
            deterministic=True,
            plots=False,
            amp=False,  # its check downloads a model to compare against
            project=str(out),
            name="run",
            exist_ok=True,
            verbose=False,
        )
    except (FileNotFoundError, RuntimeError, ValueError, KeyError) as err:
        raise TrainingError(f"training on {data} failed: {err}") from err
    weights = out / "run" / "weights"
    checkpoint = weights / "best.pt" if (weights / "best.pt").is_file() else weights / "last.pt"
    if not checkpoint.is_file():
        raise TrainingError(f"training wrote no checkpoint under {weights}")
    target = out / "model.pt"
    shutil.copyfile(checkpoint, target)
    record = TrainRecord(
        base=base,
        data=str(data.resolve()),
        data_sha256=digest,
        names=spec.names,
        epochs=epochs,
        imgsz=imgsz,
        images=count,
        seconds=round(time.monotonic() - started, 1),
    )
    target.with_suffix(SIDECAR_SUFFIX).write_text(json.dumps(asdict(record), indent=2) + "\n")
    return target, record


def read_record(checkpoint: Path) -> TrainRecord | None:
    """The ``model.json`` beside a checkpoint ``train`` wrote; None for another one."""
    sidecar = checkpoint.with_suffix(SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return None
    raw = json.loads(sidecar.read_text())
    raw["names"] = tuple(raw["names"])
    return TrainRecord(**raw)


def export(
    checkpoint: Path,
    out: Path,
    *,
    imgsz: int = 320,
    version: str = "0.0.0",
    name: str | None = None,
) -> Path:
    """ONNX with dynamic shapes at ``out``, with microbrain's metadata keys added."""
    if not _VERSION.fullmatch(version):
        raise TrainingError(
            f"version {version!r}: use letters, digits and . + _ - (at most 48, e.g. 1.2.0); "
            "the gateway reports it with 12 hex digits of the file's hash appended"
        )
    if not checkpoint.is_file() or checkpoint.suffix != ".pt":
        raise TrainingError(f"{checkpoint}: not a checkpoint file (.pt from `model train`)")
    record = read_record(checkpoint)
    offline.prepare()
    import onnx
    from ultralytics.models import YOLO

    offline.quiet_settings()
    _quiet_ultralytics()
    try:
        model = YOLO(str(checkpoint))
        written = Path(model.export(format="onnx", dynamic=True, imgsz=imgsz, verbose=False))
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise TrainingError(f"export of {checkpoint} failed: {err}") from err
    graph = onnx.load(str(written))
    meta = {p.key: p.value for p in graph.metadata_props}
    if META_VERSION in meta:
        meta[META_ULTRALYTICS] = meta[META_VERSION]
    meta[META_VERSION] = version
    meta[META_NAME] = name or out.stem
    meta[META_BASE] = record.base if record else str(model.ckpt_path or checkpoint.name)
    if record is not None:
        meta[META_DATA_SHA256] = record.data_sha256
    del graph.metadata_props[:]
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=str(value))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(out))
    if written.resolve() != out.resolve():
        written.unlink(missing_ok=True)
    return out
