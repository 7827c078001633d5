"""Cloud fixtures: a migrated database (SQLite and PostgreSQL), a registered gateway."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import make_engine, session_factory, transaction, upgrade
from cloud.ingest import dead_letters
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath
from tests.cloud.helpers import DEVICES, unique_gateway

_migrated: set[str] = set()
SQLITE = "sqlite:///"


def migrated(url: str, template: Path | None = None) -> str:
    """``url`` brought to the head revision: a fresh SQLite file as a copy of ``template``
    (migrated once a session; running the migrations took ~0.4 s a test, 1 s loaded)."""
    if url not in _migrated:
        target = Path(url.removeprefix(SQLITE)) if url.startswith(SQLITE) else None
        if template is not None and target is not None and not target.exists():
            with sqlite3.connect(template) as source, sqlite3.connect(target) as copy:
                source.backup(copy)  # consistent, whatever the journal mode
        else:
            upgrade(url)
        _migrated.add(url)
    return url


@pytest.fixture(autouse=True, scope="session")
def roomy_dead_letter_caps() -> Iterator[None]:
    """Every test's ingest sees the retained statuses other tests' gateways left on the shared
    broker (127.0.0.1:1883): each is a dead letter of an unregistered gateway, and on the
    session's one PostgreSQL database they soon filled the cap that unregistered senders share,
    so a test's own stranger was counted instead of kept. The caps have their own tests
    (test_dead_letters.py sets its own)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MB_CLOUD_DEAD_LETTER_MAX_ROWS", "1000000")
    patch.setenv("MB_CLOUD_DEAD_LETTER_MAX_BYTES", str(1024**3))
    dead_letters.configure(None)
    yield
    patch.undo()
    dead_letters.configure(None)


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite database migrated to head, copied for each test that wants one."""
    path = tmp_path_factory.mktemp("migrated") / "template.db"
    upgrade(f"{SQLITE}{path}")
    return path


@pytest.fixture
def cloud_url(db_url: str, migrated_sqlite_template: Path) -> str:
    """A migrated database URL (both stores)."""
    return migrated(db_url, migrated_sqlite_template)


@pytest.fixture
def sqlite_cloud_url(sqlite_url: str, migrated_sqlite_template: Path) -> str:
    return migrated(sqlite_url, migrated_sqlite_template)


@pytest.fixture
def factory(cloud_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(cloud_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def gw(factory: sessionmaker[Session]) -> GatewayPath:
    """A gateway unique to this test, registered with building b1 (databases are shared
    across tests on PostgreSQL, so ids never repeat)."""
    path = unique_gateway()
    with transaction(factory) as session:
        register_gateway(
            session, path.community, path.compound, path.gateway, building="b1", **DEVICES
        )
    return path
