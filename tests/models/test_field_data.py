"""Verdicts from the cloud's API become a YOLO dataset that ultralytics trains on: a real
cloud API (uvicorn, SQLite), a gateway's evidence uploads, a duty officer's verdicts."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.db import make_engine, session_factory, transaction, upgrade
from cloud.evidence import find_event, path_for
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.cli import app
from microbrain.protocol import EvidenceKind, EvidenceRef
from models.classes import MICROBRAIN_CLASSES
from models.datasets import load_data_yaml, read_labels
from models.training import train
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway
from tests.models.conftest import IMGSZ, read_image
from tests.utils.api_server import serve

PASSWORD = "duty-password"


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def _avi(frames: list[np.ndarray], tmp_path: Path) -> bytes:
    path = tmp_path / "clip.avi"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path.read_bytes()


def _ref(name: str, data: bytes, kind=EvidenceKind.SNAPSHOT, content_type="image/jpeg"):
    return EvidenceRef(
        kind=kind,
        name=name,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        content_type=content_type,
    )


@pytest.fixture
def cloud(tmp_path):
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    settings = Settings(environment="test", evidence_dir=tmp_path / "evidence")
    with serve(create_api(ApiState(settings=settings, factory=factory))) as server:
        yield factory, settings, server.url
    engine.dispose()


def test_verdicts_become_a_yolo_dataset_that_trains(cloud, tmp_path, sample_media):
    factory, settings, url = cloud
    gw = unique_gateway()
    now = datetime.now(UTC)
    with transaction(factory) as s:
        register_gateway(s, gw.community, gw.compound, gw.gateway, building="b1", **DEVICES)
        auth.set_gateway_password(s, gw.gateway, "gw-password", now=now)
        user = auth.create_user(
            s, f"d-{uuid.uuid4().hex[:6]}", PASSWORD, "duty", now=now, community=gw.community
        ).username
    dog = read_image(sample_media("dog.jpg"))
    person = read_image(sample_media("person.jpg"))
    moto = read_image(sample_media("motorcycle_left.png"))
    vtest = cv2.VideoCapture(str(sample_media("vtest.avi")))
    clip_frames = [vtest.read()[1] for _ in range(5)]
    assert all(f is not None for f in clip_frames)
    vtest.release()
    files = {
        "dog": {"snap.jpg": _jpeg(dog)},
        "person": {"snap.jpg": _jpeg(person)},
        "fp": {"snap.jpg": _jpeg(moto)},
        "clip": {"snap.jpg": _jpeg(clip_frames[2]), "clip.avi": _avi(clip_frames, tmp_path)},
        "missing": {"snap.jpg": _jpeg(person[::2, ::2])},  # declared, never uploaded
        "tampered": {"snap.jpg": _jpeg(dog[::2, ::2])},  # changed on the cloud's disk
        "unreviewed": {"snap.jpg": _jpeg(dog[:, ::-1])},
    }
    events = {}
    for n, (tag, named) in enumerate(files.items()):
        refs = [
            _ref(name, data)
            if name.endswith(".jpg")
            else _ref(name, data, EvidenceKind.CLIP, "video/x-msvideo")
            for name, data in named.items()
        ]
        ev = event(n + 1, zone=f"z-{tag}", evidence=tuple(refs))
        (alert_id,) = ingest(factory, gw, [ev]).alerts
        events[tag] = (ev.id, int(alert_id))
        for name, data in named.items():
            if tag == "missing":
                continue
            put = httpx.put(
                f"{url}/api/evidence/{ev.id}/{name}", content=data, auth=(gw.gateway, "gw-password")
            )
            assert put.status_code == 201, put.text
    with transaction(factory) as s:
        row = find_event(s, events["tampered"][0])
        path_for(settings.evidence_dir, row, "snap.jpg").write_bytes(_jpeg(person[::2, ::2]))
    token = httpx.post(
        f"{url}/api/auth/token", json={"username": user, "password": PASSWORD}
    ).json()["access_token"]
    verdicts = {
        "dog": "confirmed",
        "person": "confirmed",
        "clip": "confirmed",
        "fp": "false_positive",
        "missing": "confirmed",
        "tampered": "confirmed",
    }
    for tag, verdict in verdicts.items():
        r = httpx.post(
            f"{url}/api/alerts/{events[tag][1]}/verdict",
            json={"verdict": verdict},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text

    out = tmp_path / "field"
    runner = CliRunner()
    args = [
        "model",
        "dataset",
        "export",
        "--cloud",
        url,
        "--user",
        user,
        "--out",
        str(out),
        "--password-env",
        "TEST_MB_PASSWORD",
    ]
    wrong = runner.invoke(app, args, env={"TEST_MB_PASSWORD": "wrong"})
    assert wrong.exit_code == 2 and "refused (401)" in wrong.output
    result = runner.invoke(app, args, env={"TEST_MB_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    assert "1 × evidence not uploaded" in result.output
    assert "1 × evidence does not match its declared sha256 and size" in result.output

    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    by_event = {line["event_id"]: line for line in lines}
    assert set(by_event) == {events[t][0] for t in ("dog", "person", "clip", "fp")}
    spec = load_data_yaml(out / "data.yaml")
    assert spec.names == MICROBRAIN_CLASSES
    for tag in ("dog", "person", "clip", "fp"):
        line = by_event[events[tag][0]]
        assert line["alert_id"] == events[tag][1] and line["gateway"] == gw.gateway
        assert line["camera"] == "cam-1" and line["kind"] == "illegal_parking"
        assert line["verdict"] == verdicts[tag] and line["verdict_by"] == user
        labels = read_labels(out / line["image"], len(spec.names))
        if tag == "fp":  # a false alarm's frame: background, nothing labelled
            assert len(labels) == 0 and line["labelled_by"] is None
        else:
            assert len(labels) > 0 and line["labelled_by"].startswith("default:")
    # the clip's raw frame, not the snapshot with the gateway's drawing on it
    clip_line = by_event[events["clip"][0]]
    assert clip_line["evidence"] == "clip.avi" and clip_line["overlay"] is False
    dog_line = by_event[events["dog"][0]]
    assert dog_line["overlay"] is True
    stored = (out / dog_line["image"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == dog_line["evidence_sha256"]
    dog_classes = {
        MICROBRAIN_CLASSES[int(c)] for c in read_labels(out / dog_line["image"], 14)[:, 0]
    }
    assert {"dog", "bicycle"} <= dog_classes

    checkpoint, record = train(
        out / "data.yaml",
        "yolov8n.yaml",
        tmp_path / "run",
        epochs=1,
        imgsz=IMGSZ,
        batch=4,
        val=False,
    )
    assert checkpoint.is_file() and record.images == 4


def test_autolabel_prelabels_a_folder_of_frames(tmp_path, sample_media):
    frames = tmp_path / "frames" / "gw-1"
    frames.mkdir(parents=True)
    (frames / "dog.jpg").write_bytes(sample_media("dog.jpg").read_bytes())
    (frames / "moto.png").write_bytes(sample_media("motorcycle_left.png").read_bytes())
    (frames / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "review"
    result = CliRunner().invoke(
        app, ["model", "autolabel", str(tmp_path / "frames"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "labelled  2 image(s)" in result.output
    assert "1 × not an image OpenCV can read" in result.output
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(Path(line["source"]).name for line in lines) == ["dog.jpg", "moto.png"]
    for line in lines:
        stored = out / line["image"]
        assert stored.read_bytes() == Path(line["source"]).read_bytes()  # as collected
        classes = {MICROBRAIN_CLASSES[int(c)] for c in read_labels(stored, 14)[:, 0]}
        assert classes and classes <= set(MICROBRAIN_CLASSES)
    missing = CliRunner().invoke(
        app, ["model", "autolabel", str(tmp_path / "none"), "--out", str(out)]
    )
    assert missing.exit_code == 2 and "no such folder" in missing.output
    not_onnx = CliRunner().invoke(
        app, ["model", "autolabel", str(tmp_path / "frames"), "--out", str(out), "--model", "m.pb"]
    )
    assert not_onnx.exit_code == 2 and "give an ONNX export" in not_onnx.output
