"""The uplink over TLS to a real Mosquitto whose TLS listener `broker config` wrote."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.outbox import Outbox
from edge.uplink import Uplink, UplinkSettings
from microbrain.broker.embedded import free_port
from microbrain.cli import app
from microbrain.protocol import GatewayPath
from tests.edge.uplink.test_broker_acl import PASSWORDS, wait
from tests.utils.services import private_mosquitto


def make_ca(d: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made by the real openssl."""
    d.mkdir(parents=True, exist_ok=True)

    def run(*a: str) -> None:
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=microbrain test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return d / "ca.pem", d / "server.pem", d / "server.key"


def test_uplink_over_tls(
    tmp_path: Path, demo_site_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in PASSWORDS.items():
        monkeypatch.setenv(k, v)
    ca, cert, key = make_ca(tmp_path / "pki")
    port = free_port()
    args = [
        "broker",
        "config",
        "--site",
        str(demo_site_path),
        "--out",
        str(tmp_path / "b"),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--tls-ca",
        str(ca),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    ] + (["--user", "root"] if os.geteuid() == 0 else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    path = GatewayPath("xiyuan", "xiyuan-1", "gw-xiyuan-1")
    with private_mosquitto(tmp_path / "b", conf=tmp_path / "b" / "mosquitto.conf", port=port):
        good = Uplink(
            path,
            Outbox(tmp_path / "o.db"),
            UplinkSettings(
                host="127.0.0.1",
                port=port,
                username="gw-xiyuan-1",
                password="pw-x1-secret",
                tls_ca=ca,
                backoff_min_s=0.1,
                backoff_max_s=0.5,
            ),
        ).start()
        assert good.wait_connected(10)
        good.stop()
        # without TLS the same listener is not an MQTT broker to us
        plain = Uplink(
            path,
            Outbox(tmp_path / "p.db"),
            UplinkSettings(
                host="127.0.0.1",
                port=port,
                username="gw-xiyuan-1",
                password="pw-x1-secret",
                backoff_min_s=0.1,
                backoff_max_s=0.5,
            ),
        ).start()
        assert not wait(plain.connected.is_set, 2)
        plain.stop()


def test_tls_needs_all_three_files(tmp_path: Path, demo_site_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "broker",
            "config",
            "--site",
            str(demo_site_path),
            "--out",
            str(tmp_path),
            "--tls-ca",
            str(demo_site_path),
        ],
    )
    assert result.exit_code == 2 and "all three" in result.output
