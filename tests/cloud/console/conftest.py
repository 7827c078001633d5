"""Fixtures for the console: the real app (API + console) on a real uvicorn server over a
migrated SQLite database, users bound to places, alerts made through the real ingest, and
Debian's Chromium driven by Playwright."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.console import mount_console
from cloud.db import make_engine, read_only, session_factory, transaction
from cloud.db import models as m
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath
from tests.cloud.helpers import DEVICES, event, ingest, unique_gateway
from tests.utils.api_server import Served, serve

CHROMIUM = Path(os.environ.get("MB_CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "correct horse battery"
_HASH: list[str] = []
ARTEFACTS = Path(os.environ.get("MB_TEST_ARTEFACTS", "var/test-artefacts/console"))


def password_hash() -> str:
    if not _HASH:  # argon2 is the slow part: one hash for every test user
        _HASH.append(auth.hash_password(PASSWORD))
    return _HASH[0]


@dataclass
class Console:
    """A served cloud with the console, and ways to put things in it."""

    served: Served
    factory: sessionmaker[Session]
    state: ApiState
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return self.served.url

    def gateway(self, compound: str = "compound-1") -> GatewayPath:
        path = unique_gateway(compound)
        with transaction(self.factory) as s:
            register_gateway(
                s, path.community, path.compound, path.gateway, building="b1", **DEVICES
            )
        return path

    def user(self, role: str, place: GatewayPath | None, *, level: str = "compound") -> str:
        """A user of ``role`` bound to ``place``'s compound (or community), password
        PASSWORD; returns the user name."""
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        with transaction(self.factory) as s:
            s.add(
                m.User(
                    username=name,
                    password_hash=password_hash(),
                    role=role,
                    community=place.community if place else None,
                    compound=place.compound if place and level == "compound" else None,
                    active=True,
                    created_at=self.state.clock(),
                )
            )
        return name

    def alert(self, gw: GatewayPath, **kw: Any) -> int:
        """Raise an alert through the real ingest; returns its id."""
        n = next(self.seq)
        kw.setdefault("source", f"cam-{n % 3}")
        kw.setdefault("zone", f"zone-{n}")
        ev = event(n, **kw)
        ingest(self.factory, gw, [ev])
        self.state.notifier.notify()
        with self.factory() as s:
            row = s.query(m.EventRow).filter_by(id=ev.id).one()
            assert row.alert_id is not None
            return row.alert_id


@pytest.fixture
def console(sqlite_cloud_url: str) -> Iterator[Console]:
    engine = make_engine(sqlite_cloud_url)
    factory = session_factory(engine)
    state = ApiState(
        settings=Settings(environment="test"),
        factory=factory,
        readers=session_factory(read_only(engine)),  # as CloudService has them
        stream_poll_s=0.05,
    )
    app = create_api(state)
    mount_console(app, state)
    with serve(app) as served:
        yield Console(served, factory, state)
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # per module, not per session: Playwright's sync API keeps an asyncio loop running in
    # the main thread while it is open, and later tests that call asyncio.run() would fail
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian's chromium), "
            "or set MB_CHROMIUM to a Chromium binary"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def log_in(page: Any, console: Console, username: str, *, next_path: str = "/") -> None:
    page.goto(f"{console.url}/login?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console.url}{next_path}")


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot as a test artefact (var/test-artefacts/console/NAME.png)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
