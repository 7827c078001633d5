"""Schemathesis against /openapi.json of the real app on a real database (SQLite) over
real HTTP: no request may get a 5xx, and every status an operation answers must be one
its OpenAPI documents. Bounded (fixed seed, MAX_EXAMPLES per operation, one worker) to
stay well inside the suite's time on two cores; `st run` is schemathesis' own runner, so
a failure prints the case and a curl line that reproduces it."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.commands import MqttCommandSender
from cloud.db import make_engine, session_factory, transaction
from cloud.login_throttle import ThrottlePolicy
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway
from tests.utils.api_server import serve
from tests.utils.services import MosquittoProcess

SEED = 20261201
# examples per operation (20, as in the run that found the 500s): the whole run took 74 s
# (coverage 31 s, fuzzing 37 s, stateful 3 s; 1,515 cases) on the 2-core box while other
# work loaded it (load 6-7); logins and user creation run argon2 (about a second there),
# so they get fewer
MAX_EXAMPLES = 20
MAX_EXAMPLES_ARGON2 = 5
CHECKS = "not_a_server_error,status_code_conformance"
ADMIN = ("admin", "admin-password")
GATEWAY_PASSWORD = "gateway-password"
ST = Path(sys.executable).with_name("st")
# schemathesis logs in as the admin (again whenever a call answers 401: the run may well
# revoke its own tokens through /api/users/{{id}}/revoke-tokens), and uploads evidence as
# the gateway
CONFIG = """
[generation]
max-examples = {max_examples}

[[operations]]
include-path-regex = "^/api/(auth/token|users)$"
generation.max-examples = {max_examples_argon2}

[auth.dynamic.openapi.HTTPBearer]
path = "/api/auth/token"
payload = {{ username = "{admin}", password = "{admin_password}" }}
extract_selector = "/access_token"

[auth.openapi.HTTPBasic]
username = "{gateway}"
password = "{gateway_password}"
"""


@dataclass(frozen=True)
class Served:
    base_url: str
    gateway: str
    records: list[logging.LogRecord]


class _Errors(logging.Handler):
    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record)


def _seed(factory: sessionmaker[Session]) -> tuple[str, str]:
    """A gateway with an alert and its events, and a district admin; returns (gateway id,
    the admin's token)."""
    gw = unique_gateway()
    now = datetime.now(UTC)
    with transaction(factory) as s:
        register_gateway(s, gw.community, gw.compound, gw.gateway, building="b1", **DEVICES)
        auth.set_gateway_password(s, gw.gateway, GATEWAY_PASSWORD, now=now)
        admin = auth.create_user(s, *ADMIN, "admin", now=now)
        token = auth.issue_token(s, admin, now=now, ttl_s=3600)
    ingest(factory, gw, [event(seq) for seq in range(1, 4)])
    return gw.gateway, token


@pytest.fixture
def served(sqlite_cloud_url: str, tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[Served]:
    engine = make_engine(sqlite_cloud_url)
    factory = session_factory(engine)
    gateway, token = _seed(factory)
    settings = Settings(
        environment="test",
        evidence_dir=tmp_path / "evidence",
        broker_url=f"mqtt://127.0.0.1:{mosquitto.port}",
    )
    commands = MqttCommandSender(settings)  # "verify" sends a recheck, as in production
    # the run's logins fail by the hundred from one address, some of them as "admin" (the
    # fuzzer reuses the names it knows), and the run must not lock its own admin out
    throttle = ThrottlePolicy(max_failures_per_user=10**9, max_failures_per_address=10**9)
    state = ApiState(settings=settings, factory=factory, commands=commands, login_throttle=throttle)
    records: list[logging.LogRecord] = []
    handler = _Errors(records)
    logging.getLogger().addHandler(handler)
    try:
        # log_config=None: uvicorn's loggers propagate, so a traceback would be seen here
        with serve(create_api(state), access_log=False, log_config=None) as server:
            base = server.url
            headers = {"Authorization": f"Bearer {token}"}
            (alert,) = httpx.get(f"{base}/api/alerts", headers=headers).json()["items"]
            assert (
                httpx.post(
                    f"{base}/api/alerts/{alert['id']}/dispatch", headers=headers, json={}
                ).status_code
                == 200
            )  # a work order to find
            yield Served(base, gateway, records)
    finally:
        logging.getLogger().removeHandler(handler)
        commands.close()
        engine.dispose()


def test_no_server_error_and_no_undocumented_status(served: Served, tmp_path: Path) -> None:
    """Every operation but the endless SSE stream (its Last-Event-ID bound is tested in
    test_bad_input), in all phases schemathesis has (examples, coverage: the boundary
    values such as 2^63; fuzzing; stateful), positive and negative data."""
    if not ST.exists():
        pytest.fail(
            f"schemathesis' `st` is not installed next to {sys.executable}: pip install -e '.[dev]'"
        )
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        CONFIG.format(
            max_examples=MAX_EXAMPLES,
            max_examples_argon2=MAX_EXAMPLES_ARGON2,
            admin=ADMIN[0],
            admin_password=ADMIN[1],
            gateway=served.gateway,
            gateway_password=GATEWAY_PASSWORD,
        )
    )
    command = [
        str(ST),
        "--config-file",
        str(config),
        "run",
        f"{served.base_url}/openapi.json",
        "--checks",
        CHECKS,
        "--seed",
        str(SEED),
        "--workers",
        "1",
        # generous: a loaded box must not turn a slow answer into a failure
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "too_slow",
        "--exclude-path",
        "/api/stream/alerts",
        "--no-color",
    ]
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    print(run.stdout[-3000:])  # the summary, for -s / -rA
    assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-2000:]
    # it really ran every operation, as the admin to the end
    paths = httpx.get(f"{served.base_url}/openapi.json").json()["paths"]
    operations = sum(
        len(methods) for path, methods in paths.items() if path != "/api/stream/alerts"
    )
    assert re.search(r"Tested: (\d+)", run.stdout)[1] == str(operations)  # type: ignore[index]
    assert "Authentication stopped working" not in run.stdout
    tracebacks = [r.getMessage() for r in served.records if r.exc_info]
    assert tracebacks == []


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_docs_load_nothing_from_elsewhere(page: str, tmp_path: Path) -> None:
    """/docs and /redoc name only scripts, styles and icons the app serves itself (the
    FastAPI defaults load them from a CDN: no docs where the internet is not)."""
    from fastapi.testclient import TestClient

    # no request here reaches the database
    state = ApiState(settings=Settings(environment="test", evidence_dir=tmp_path), factory=None)  # type: ignore[arg-type]
    with TestClient(create_api(state)) as client:
        html = client.get(page)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
        # and the ones in the page's inline script
        urls += re.findall(r"""(?:_url|url)\s*:\s*["']([^"']+)["']""", html.text)
        assert urls, html.text
        assert [u for u in urls if "//" in u] == []
        for url in urls:
            assert client.get(url).status_code == 200, url
