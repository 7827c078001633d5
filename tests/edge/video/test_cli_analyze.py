"""`microbrain edge analyze` end to end on real media."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from microbrain.cli import app
from microbrain.protocol.payloads import Event

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "cameras"
runner = CliRunner()


def test_analyze_prints_events_as_json_lines_and_writes_evidence(tmp_path):
    result = runner.invoke(
        app,
        [
            "edge",
            "analyze",
            "sample:dog.jpg",
            "--camera",
            str(CONFIGS / "dog-courtyard.yaml"),
            "--json",
            "--evidence",
            str(tmp_path),
            "--duration",
            "12",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    events = [
        Event.model_validate_json(line)
        for line in result.stdout.splitlines()
        if line.startswith("{")
    ]
    # dog.jpg's road bicycle is not an e-bike: only the dog raises
    assert sorted(e.kind for e in events) == ["unleashed_dog"]
    for event in events:
        assert (tmp_path / event.evidence[0].name).is_file()
        assert json.loads(event.to_json())["schema"] == 1


def test_analyze_is_deterministic(tmp_path):
    args = [
        "edge",
        "analyze",
        "sample:dog.jpg",
        "--camera",
        str(CONFIGS / "dog-courtyard.yaml"),
        "--json",
        "--duration",
        "12",
        "--no-progress",
        "--start",
        "2026-03-01T23:30:00+08:00",
    ]
    runs = []
    for _ in range(2):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        runs.append(
            [
                (e["kind"], e["ts"], e["dwell_s"], e["track_id"])
                for e in map(json.loads, result.stdout.splitlines())
                if "kind" in e
            ]
        )
    assert runs[0] == runs[1] and runs[0]
    assert runs[0][0][1].startswith("2026-03-01T15:30:1")  # video time from --start, in UTC


def test_bad_camera_file_exits_2_with_the_yaml_path(tmp_path):
    cam = tmp_path / "cam.yaml"
    cam.write_text(
        "id: cam-x\nsource: sample:dog.jpg\nzones:\n  - id: z\n    polygon: [[0, 0], [1, 1]]\n"
        "    rules: [{type: unleashed_dog}]\n"
    )
    result = runner.invoke(app, ["edge", "analyze", "sample:dog.jpg", "--camera", str(cam)])
    assert result.exit_code == 2
    assert "zones[0].polygon" in result.stderr and "at least 3 points" in result.stderr


def test_a_model_that_is_not_a_model_exits_2_naming_it(tmp_path):
    model = tmp_path / "fake.onnx"
    model.write_text("hello")
    result = runner.invoke(
        app,
        [
            "edge",
            "analyze",
            "sample:dog.jpg",
            "--camera",
            str(CONFIGS / "dog-courtyard.yaml"),
            "--detector",
            "onnx_yolo",
            "--model",
            str(model),
        ],
    )
    assert result.exit_code == 2 and "fake.onnx" in result.stderr


def test_truncated_video_reports_and_exits_1(tmp_path, sample_media):
    data = Path(sample_media("vtest.avi")).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 4])
    result = runner.invoke(
        app,
        [
            "edge",
            "analyze",
            str(cut),
            "--camera",
            str(CONFIGS / "vtest-fire-lane.yaml"),
            "--fps",
            "0.5",
            "--no-progress",
        ],
    )
    assert result.exit_code == 1
    assert "camera cam-fire-lane" in result.stderr and "truncated" in result.stderr
    assert "frames analysed" in result.stderr


def test_analyze_looks_at_zone_crops_unless_told_not_to(tmp_path):
    # a dynamic-shape model that "finds" a person at the centre of what it is shown: on the
    # zone's crop that is inside the zone; on the whole frame (--no-crops) it is not
    from tests.edge.video.onnx_models import build_centre_finder

    model = build_centre_finder(tmp_path / "centre.onnx")
    cam = tmp_path / "cam.yaml"
    cam.write_text(
        "id: cam-crop\nsource: sample:dog.jpg\nfps: 2\nzones:\n  - id: corner\n"
        "    polygon: [[600, 30], [760, 30], [760, 150], [600, 150]]\n"
        "    rules: [{type: object_in_zone, kind: someone_in_corner, classes: [person],"
        " dwell_s: 1}]\n"
    )
    kinds = {}
    for flag in ([], ["--no-crops"]):
        result = runner.invoke(
            app,
            [
                "edge",
                "analyze",
                "sample:dog.jpg",
                "--camera",
                str(cam),
                "--json",
                "--detector",
                "onnx_yolo",
                "--model",
                str(model),
                "--duration",
                "4",
                "--no-progress",
                *flag,
            ],
        )
        assert result.exit_code == 0, result.output
        kinds[bool(flag)] = [
            e["kind"] for e in map(json.loads, result.stdout.splitlines()) if "kind" in e
        ]
    assert kinds == {False: ["someone_in_corner"], True: []}


def test_an_ebike_in_the_lift_is_raised_within_seconds():
    result = runner.invoke(
        app,
        [
            "edge",
            "analyze",
            "sample:motorcycle_left.png",
            "--camera",
            str(CONFIGS / "ebike-elevator.yaml"),
            "--json",
            "--duration",
            "8",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    [event] = [
        Event.model_validate_json(line)
        for line in result.stdout.splitlines()
        if line.startswith("{")
    ]
    assert (event.kind, event.state.value, event.object_class) == (
        "ebike_in_elevator",
        "raised",
        "ebike",
    )
    assert event.detail["verdict"] == "ebike"
    assert event.dwell_s is not None and event.dwell_s <= 2  # at once, not after minutes
    assert event.frame_ts is not None and event.frame_ts.second <= 3  # 2 fps from 00:00:00
