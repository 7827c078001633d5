"""`microbrain up` as a user runs it: real brokers, cloud, gateways, simulators, video."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from microbrain.broker.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str, token: str | None = None) -> dict:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _get_bytes(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read()


def _token(api: str, password: str) -> str:
    body = json.dumps({"username": "admin", "password": password}).encode()
    request = urllib.request.Request(
        f"{api}/api/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["access_token"]


def test_up_runs_the_system_and_stops_cleanly(tmp_path: Path) -> None:
    api_port, mqtt_port, sensor_port = free_port(), free_port(), free_port()
    # the demo playbooks' local sink (relative to the cloud's working directory, ROOT)
    sink = ROOT / "var" / "notifications.jsonl"
    sink_before = sink.stat().st_size if sink.exists() else 0
    api = f"http://127.0.0.1:{api_port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "microbrain",
            "up",
            "--data-dir",
            str(tmp_path),
            "--gateway",
            "gw-xiyuan-2",
            "--gateway",
            "gw-dongcheng-garden",
            "--api-port",
            str(api_port),
            "--mqtt-port",
            str(mqtt_port),
            "--sensor-port",
            str(sensor_port),
            "--sensor-rate",
            "5",
            "--duration",
            "150",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        kinds: set[str] = set()
        deadline = time.monotonic() + 120
        token = None
        while time.monotonic() < deadline and not {"unleashed_dog", "elevator_fault"} <= kinds:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(2)
            secrets = tmp_path / "secrets.yaml"
            if token is None and secrets.exists():
                try:
                    token = _token(
                        api, yaml.safe_load(secrets.read_text())["MB_CLOUD_ADMIN_PASSWORD"]
                    )
                except OSError:
                    continue
            if token:
                page = _get(f"{api}/api/alerts?limit=100", token)
                kinds = {a["kind"] for a in page["items"]}
        # the camera (dog.jpg, default model) and the simulated elevators both reached the cloud
        assert {"unleashed_dog", "elevator_fault"} <= kinds, kinds
        assert token is not None  # it listed the alerts above
        assert _get(f"{api}/healthz")["ok"] is True
        # the gateways were given the registry's public key: models can be pushed to them
        with urllib.request.urlopen(f"{api}/api/models/key", timeout=5) as response:
            served = response.read().decode().strip()
        assert served == (tmp_path / "model-key.pub").read_text().strip()
        gateway_config = yaml.safe_load((tmp_path / "gateways" / "gw-xiyuan-2.yaml").read_text())
        assert gateway_config["model_key"] == str(tmp_path / "model-key.pub")
        # the camera's snapshot followed its event over HTTP and matches its sha256
        picture = b""
        while time.monotonic() < deadline and not picture:
            events = _get(f"{api}/api/events?kind=unleashed_dog&limit=5", token)
            refs = [(e["id"], r) for e in events for r in e["evidence"]]
            assert refs, events
            event_id, ref = refs[0]
            try:
                picture = _get_bytes(f"{api}/api/evidence/{event_id}/{ref['name']}", token)
            except urllib.error.HTTPError as err:
                assert err.code == 404, err  # not uploaded yet
                time.sleep(2)
        assert hashlib.sha256(picture).hexdigest() == ref["sha256"]
        assert picture[:2] == b"\xff\xd8"  # a JPEG

        # the elevator fault's playbook notified the duty desk through the local sink
        def notified() -> list[dict]:
            if not sink.exists():
                return []
            with sink.open(encoding="utf-8") as f:
                f.seek(sink_before)
                return [json.loads(line) for line in f if line.strip()]

        told_by = time.monotonic() + 30  # the responder looks every 0.25 s; a loaded box
        while time.monotonic() < told_by and not any("电梯故障" in n["title"] for n in notified()):
            time.sleep(1)
        assert any("电梯故障" in n["title"] for n in notified()), notified()

        # the demo ladder (15 s at the building level): an alert nobody acknowledges climbs
        def escalated() -> list[str]:
            page = _get(f"{api}/api/alerts?limit=100", token)
            return [a["kind"] for a in page["items"] if a["level"] != "building"]

        climb_by = time.monotonic() + 60  # 15 s deadline + the scheduler's tick, loaded box
        while time.monotonic() < climb_by and not escalated():
            time.sleep(1)
        assert escalated(), "no alert left the building level under the demo ladder"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopping" in out
    # the demo login is printed once, and the demo copy of the site says what it changed
    password = yaml.safe_load((tmp_path / "secrets.yaml").read_text())["MB_CLOUD_ADMIN_PASSWORD"]
    assert f"demo login: admin / {password}" in out
    assert "DEMO copy" in (tmp_path / "site.demo.yaml").read_text()
    # Ctrl-C (SIGTERM here) stopped every process without an error in its log
    for log in (tmp_path / "logs").iterdir():
        text = log.read_text(errors="replace")
        assert "Unspecified error" not in text and "Traceback" not in text, (log.name, text[-2000:])
    logs = {p.name for p in (tmp_path / "logs").iterdir()}
    assert {"cloud.log", "gw-xiyuan-2.log", "gw-dongcheng-garden.log"} <= logs
    assert "stopped" in (tmp_path / "logs" / "gw-xiyuan-2.log").read_text()


def test_up_refuses_an_unknown_gateway(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "microbrain",
            "up",
            "--data-dir",
            str(tmp_path),
            "--gateway",
            "gw-nowhere",
        ],
        cwd=ROOT,
        check=False,  # the exit status is asserted below
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown gateway(s) gw-nowhere" in result.stderr


def test_up_stops_promptly_when_interrupted_while_starting(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "microbrain",
            "up",
            "--data-dir",
            str(tmp_path),
            "--api-port",
            str(free_port()),
            "--mqtt-port",
            str(free_port()),
            "--sensor-port",
            str(free_port()),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "logs" / "cloud.log").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # the cloud is still starting
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert not list((tmp_path / "logs").glob("gw-*.log")), "gateways started after the interrupt"
    secrets = tmp_path / "secrets.yaml"
    assert secrets.stat().st_mode & 0o777 == 0o600


def test_up_on_real_servers(tmp_path: Path, mosquitto) -> None:
    """`--broker` and `--db`: no broker is started, the cloud stores in PostgreSQL."""
    from sqlalchemy import func, select

    from cloud.db import make_engine
    from cloud.db import models as m
    from tests.utils.services import postgres_database

    with postgres_database() as db:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "microbrain",
                "up",
                "--data-dir",
                str(tmp_path / "up"),
                "--gateway",
                "gw-dongcheng-garden",
                "--broker",
                f"mqtt://127.0.0.1:{mosquitto.port}",
                "--db",
                db,
                "--api-port",
                str(free_port()),
                "--sensor-port",
                str(free_port()),
                "--sensor-rate",
                "5",
                "--duration",
                "120",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        engine = make_engine(db)
        try:
            deadline = time.monotonic() + 100
            stored = 0
            while time.monotonic() < deadline and not stored:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(2)
                try:
                    with engine.connect() as conn:
                        stored = conn.scalar(select(func.count()).select_from(m.ReadingRow)) or 0
                except Exception:  # noqa: BLE001 - the cloud has not migrated it yet
                    stored = 0
            assert stored, "no reading reached PostgreSQL"
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            engine.dispose()
        assert proc.returncode == 0, out
        assert f"cloud broker: 127.0.0.1:{mosquitto.port} (--broker)" in out
        assert not (tmp_path / "up" / "broker").exists()  # no broker of its own was started
