"""Training-side fixtures: ultralytics kept offline in a folder of the test session's own,
a tiny dataset pseudo-labelled from the bundled media, one model trained on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from microbrain.cli import app
from models import offline
from models.datasets import DatasetWriter, pseudo_labels

IMGSZ = 160  # small: one epoch on 2 loaded cores in seconds


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"{path}: not readable"
    return image


@pytest.fixture(scope="session", autouse=True)
def ultralytics_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Ultralytics' settings and fonts in this session's own folder (never ~/.cache)."""
    folder = tmp_path_factory.mktemp("ultralytics")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MB_ULTRALYTICS_DIR", str(folder))
        yield offline.prepare(folder)


@pytest.fixture(scope="session")
def ssd():
    from edge.video.detectors import load_detector

    return load_detector()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, sample_media, ssd) -> Path:
    """data.yaml of 8 frames from the package-shipped media, labelled by the default SSD
    (people, a dog, a bicycle, cars, a motorcycle)."""
    from edge.video.sources import FileSource

    writer = DatasetWriter(tmp_path_factory.mktemp("tiny"))
    for name in ("dog.jpg", "person.jpg", "motorcycle_left.png"):
        image = read_image(sample_media(name))
        writer.add(
            Path(name).stem, pseudo_labels(ssd, image), {"source": f"sample:{name}"}, image=image
        )
    for frame in FileSource("vtest", str(sample_media("vtest.avi")), 0.5).frames():
        boxes = pseudo_labels(ssd, frame.image)
        writer.add(
            f"vtest-{frame.index:04d}", boxes, {"source": "sample:vtest.avi"}, image=frame.image
        )
        if writer.count == 8:
            break
    assert writer.boxes >= 10, "the SSD should have labelled people, cars and the dog"
    return writer.finish()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> tuple[Path, Path]:
    """(checkpoint, ONNX export) of yolov8n trained from its yaml for one epoch, through
    the CLI."""
    out = tmp_path_factory.mktemp("train")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "model",
            "train",
            "--data",
            str(tiny_dataset),
            "--base",
            "yolov8n.yaml",
            "--epochs",
            "1",
            "--imgsz",
            str(IMGSZ),
            "--batch",
            "8",
            "--out",
            str(out),
            "--no-val",
        ],
    )
    assert result.exit_code == 0, result.output
    checkpoint = out / "model.pt"
    onnx = out / "candidate.onnx"
    result = runner.invoke(
        app,
        [
            "model",
            "export",
            str(checkpoint),
            "--out",
            str(onnx),
            "--imgsz",
            str(IMGSZ),
            "--version",
            "1.0.0",
        ],
    )
    assert result.exit_code == 0, result.output
    return checkpoint, onnx
