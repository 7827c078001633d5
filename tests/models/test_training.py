"""Train one epoch offline from a yaml architecture, export, load as a gateway would."""

from __future__ import annotations

import ast
import shutil

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edge.video.detectors import load_detector
from edge.video.detectors.onnx_yolo import OnnxYoloDetector
from microbrain.cli import app
from microbrain.site.cameras import DetectorConfig
from models import offline
from models.classes import MICROBRAIN_CLASSES
from models.datasets import DatasetError, dataset_sha256, load_data_yaml, read_labels
from models.training import TrainingError, read_record, train
from tests.models.conftest import IMGSZ, read_image


def test_one_epoch_from_yaml_exports_an_onnx_the_gateway_loads(
    trained, tiny_dataset, sample_media, ultralytics_home
):
    checkpoint, exported = trained
    record = read_record(checkpoint)
    assert record is not None and record.base == "yolov8n.yaml" and record.epochs == 1
    spec = load_data_yaml(tiny_dataset)
    assert record.data_sha256 == dataset_sha256(spec) and record.images == 8
    assert record.names == MICROBRAIN_CLASSES
    # microbrain's keys beside ultralytics' own, which the edge detector parses
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert meta["version"] == "1.0.0" and meta["base_model"] == "yolov8n.yaml"
    assert meta["training_data_sha256"] == record.data_sha256
    assert meta["ultralytics_version"].startswith("8.")
    assert ast.literal_eval(meta["imgsz"]) == [IMGSZ, IMGSZ] and meta["stride"] == "32"
    names = ast.literal_eval(meta["names"])
    assert tuple(names[k] for k in sorted(names)) == MICROBRAIN_CLASSES
    # offline: the fonts ultralytics would fetch are there, copied from matplotlib's
    assert (ultralytics_home / "Arial.ttf").stat().st_size > 100_000
    from ultralytics.utils import USER_CONFIG_DIR

    assert ultralytics_home == USER_CONFIG_DIR and (ultralytics_home / "settings.json").is_file()

    detector = load_detector(DetectorConfig(type="onnx_yolo", model=str(exported)))
    assert isinstance(detector, OnnxYoloDetector)
    assert detector.class_names == MICROBRAIN_CLASSES
    assert detector.any_input_size and detector.input_size == IMGSZ
    assert detector.version.startswith("1.0.0-")
    frame = read_image(sample_media("dog.jpg"))  # 768×576 → 160×120, padded to 160×128
    raw, _scale, _pad = detector.forward(frame)
    cells = sum((160 // s) * (128 // s) for s in (8, 16, 32))
    assert raw.shape == (1, 4 + len(MICROBRAIN_CLASSES), cells)
    found = detector.detect(frame)
    assert found.xyxy.shape == (len(found), 4) and found.confidence.shape == (len(found),)
    assert set(found.names) <= set(MICROBRAIN_CLASSES)
    assert np.all(found.xyxy[:, 2:] <= [768, 576])


def test_a_base_that_would_download_is_refused(tmp_path, tiny_dataset):
    for name in ("yolov8n.pt", "yolo11s.pt"):
        with pytest.raises(offline.OfflineError, match="would download it"):
            offline.resolve_base(name)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "model",
            "train",
            "--data",
            str(tiny_dataset),
            "--base",
            "yolov8n.pt",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 2
    assert "would download it" in result.output and "yolov8n.yaml" in result.output
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(offline.OfflineError, match="not an architecture shipped"):
        offline.resolve_base("yolov99n.yaml")
    with pytest.raises(offline.OfflineError, match="not a detection architecture"):
        offline.resolve_base("yolov8n-seg.yaml")
    with pytest.raises(offline.OfflineError, match="neither a checkpoint"):
        offline.resolve_base("model.onnx")
    with pytest.raises(offline.OfflineError, match="no such architecture file"):
        offline.resolve_base(str(tmp_path / "mine.yaml"))
    # what needs no download passes
    assert offline.resolve_base("yolov8n.yaml") == "yolov8n.yaml"
    assert offline.resolve_base("yolo11n.yaml") == "yolo11n.yaml"
    local = tmp_path / "local.pt"
    local.write_bytes(b"checkpoint")
    assert offline.resolve_base(str(local)) == str(local.resolve())


def test_bad_datasets_are_refused_with_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="cannot read it"):
        train(tmp_path / "missing.yaml", "yolov8n.yaml", tmp_path / "out", epochs=1)
    empty = tmp_path / "empty"
    (empty / "images" / "train").mkdir(parents=True)
    (empty / "data.yaml").write_text(
        f"path: {empty}\ntrain: images/train\nval: images/train\nnames: [person]\n"
    )
    with pytest.raises(TrainingError, match="no images under"):
        train(empty / "data.yaml", "yolov8n.yaml", tmp_path / "out", epochs=1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("names: [person]\n")
    with pytest.raises(DatasetError, match="needs 'train'"):
        load_data_yaml(bad)
    image = empty / "images" / "train" / "a.jpg"
    image.write_bytes(b"")
    (empty / "labels" / "train").mkdir(parents=True)
    (empty / "labels" / "train" / "a.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match="outside the dataset's 1 names"):
        read_labels(image, 1)
    runner = CliRunner()
    result = runner.invoke(
        app, ["model", "export", str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "x.onnx")]
    )
    assert result.exit_code == 2 and "not a checkpoint file" in result.output
    result = runner.invoke(
        app, ["model", "export", str(tmp_path / "nothing.pt"), "--version", "1.0 beta"]
    )
    assert result.exit_code == 2 and "version '1.0 beta'" in result.output


def test_the_dataset_hash_follows_every_label_and_image(tiny_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset.parent, copy)
    (copy / "data.yaml").write_text(
        (copy / "data.yaml").read_text().replace(str(tiny_dataset.parent), str(copy))
    )
    original = dataset_sha256(load_data_yaml(tiny_dataset))
    assert dataset_sha256(load_data_yaml(copy / "data.yaml")) == original  # where: no matter
    label = sorted((copy / "labels" / "train").glob("*.txt"))[0]
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    relabelled = dataset_sha256(load_data_yaml(copy / "data.yaml"))
    assert relabelled != original
    image = sorted((copy / "images" / "train").glob("*.jpg"))[0]
    image.write_bytes(image.read_bytes()[:-1] + b"\0")
    assert dataset_sha256(load_data_yaml(copy / "data.yaml")) not in (original, relabelled)
