"""The CLI as a user runs it: a real subprocess, real exit codes, stderr messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def microbrain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "microbrain", *args],
        check=False,  # the tests look at the exit status
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_site_check_accepts_the_demo() -> None:
    result = microbrain("site", "check", "configs/demo/site.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "12 sensors" in result.stdout


def test_site_check_rejects_a_broken_copy_with_exit_2(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "configs/demo/site.yaml").read_text(encoding="utf-8"))
    data["communities"][0]["compounds"][2 - 2]["gateways"][0]["cameras"][1]["zones"][0][
        "polygon"
    ] = [[1, 1]]
    bad = tmp_path / "site.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = microbrain("site", "check", str(bad))
    assert result.returncode == 2
    assert (
        "communities[0].compounds[0].gateways[0].cameras[1].zones[0].polygon:"
        " needs at least 3 points" in result.stderr
    )
    assert result.stdout == ""


def test_site_check_missing_file() -> None:
    result = microbrain("site", "check", "nowhere.yaml")
    assert result.returncode == 2
    assert "no such file" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["site", "check"],
        ["doctor"],
        ["edge", "analyze"],
        ["edge", "run"],
        ["cloud", "serve"],
        ["simulate", "sensors"],
        ["broker", "config"],
        ["up"],
        ["model", "check"],
        ["bench"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = microbrain(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    if command:
        assert "Example" in result.stdout, f"{' '.join(command)} --help lacks an example"


def test_doctor_reports_each_item_with_a_fix() -> None:
    result = microbrain("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok] default model" in result.stdout
    # the console's browser tests need Debian's Chromium: named with its fix
    assert "chromium (the console's browser tests)" in result.stdout
    from microbrain.broker.embedded import mosquitto_executable

    if mosquitto_executable():  # found where the embedded broker looks for it
        assert f"[ok] mosquitto: {mosquitto_executable()}" in result.stdout
    lines = result.stdout.splitlines()
    for n, line in enumerate(lines):
        if line.startswith(("[missing", "[MISSING")):
            # the fix for this item, on the line right after it
            assert (
                n + 1 < len(lines)
                and lines[n + 1].startswith("    fix: ")
                and lines[n + 1].strip() != "fix:"
            ), result.stdout


def test_model_check_runs_the_default_detector_on_a_sample() -> None:
    result = microbrain("model", "check", "--runs", "2")
    assert result.returncode == 0, result.stderr
    assert "dog" in result.stdout and "bicycle" in result.stdout
    assert "median" in result.stdout and "sha256" in result.stdout


def test_model_check_refuses_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"this is not an onnx graph")
    result = microbrain("model", "check", str(bogus), "--type", "onnx_yolo")
    assert result.returncode == 2
    assert "model.onnx" in result.stderr


def test_model_check_refuses_a_tf_graph_with_unexpected_outputs(tmp_path: Path) -> None:
    """The real SSD weights under a text graph cut off before its detection head."""
    from microbrain.resources import default_model
    from tests.edge.video.tf_graphs import cut_text_graph

    pb, pbtxt = default_model()
    cut = cut_text_graph(pbtxt, "BoxEncodingPredictor/concat", tmp_path / "cut.pbtxt")
    result = microbrain("model", "check", str(pb), "--config", str(cut), "--runs", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: model '{pb}': unexpected output shape (1, 7668)")
    assert "an SSD gives [1, 1, N, 7]" in result.stderr
    assert result.stdout == ""


def test_bench_refuses_unknown_names() -> None:
    result = microbrain("bench", "nope")
    assert result.returncode == 2 and "choose one of" in result.stderr


def test_broker_config_never_prints_the_cloud_db_password(tmp_path: Path) -> None:
    # nothing listens on port 1: the error names the database, with its password hidden
    result = microbrain(
        "broker",
        "config",
        "--site",
        "configs/demo/site.yaml",
        "--out",
        str(tmp_path),
        "--cloud-db",
        "postgresql+psycopg://cloud:s3cret-pw@127.0.0.1:1/microbrain",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "cannot read gateway credentials from postgresql+psycopg://cloud:***@127.0.0.1:1/microbrain"
        in result.stderr
    )
    assert "s3cret-pw" not in result.stdout + result.stderr
