"""Shared fixtures: the real broker, real databases, the real model and media.

A missing service or resource fails the test with the command that fixes it; nothing
is skipped silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from microbrain.protocol import GatewayPath
from microbrain.resources import ResourceMissing, default_model, sample
from tests.utils.services import (
    BROKER_HOST,
    BROKER_PORT,
    MosquittoProcess,
    port_open,
    postgres_database,
    private_mosquitto,
)

# property tests: the machine's load must not fail them (hypothesis' per-example deadline
# and its too-slow health check both measure wall time); a fixed derandomised run is CI's
settings.register_profile(
    "microbrain", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("microbrain")


@pytest.fixture(scope="session")
def broker() -> tuple[str, int]:
    """(host, port) of the machine's Mosquitto (127.0.0.1:1883)."""
    if not port_open(BROKER_HOST, BROKER_PORT):
        pytest.fail(
            f"no MQTT broker on {BROKER_HOST}:{BROKER_PORT}; start one with: "
            "mosquitto -d -c /etc/mosquitto/mosquitto.conf"
        )
    return BROKER_HOST, BROKER_PORT


@pytest.fixture
def gateway_path() -> GatewayPath:
    """A gateway path unique to this test, so tests sharing the broker never cross-talk."""
    tag = uuid.uuid4().hex[:8]
    return GatewayPath(f"t-{tag}", "compound-1", "gw-1")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A private Mosquitto on a free port, with persistence; the test may kill it."""
    with private_mosquitto(tmp_path / "broker") as proc:
        yield proc


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'microbrain.db'}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    try:
        with postgres_database() as url:
            yield url
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test on both stores."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'microbrain.db'}"
    return request.getfixturevalue("postgres_url")


def _require(fn, *args):
    try:
        return fn(*args)
    except ResourceMissing as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def default_model_files() -> tuple[Path, Path]:
    """(frozen graph .pb, .pbtxt) of the default COCO SSD-MobileNetV2."""
    return _require(default_model)


@pytest.fixture(scope="session")
def sample_media():
    """``sample_media("vtest.avi")`` → path; fails naming the package if missing."""
    return lambda name: _require(sample, name)


@pytest.fixture(scope="session")
def demo_site_path() -> Path:
    return Path(__file__).resolve().parents[1] / "configs" / "demo" / "site.yaml"
