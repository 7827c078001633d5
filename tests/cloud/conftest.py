"""Cloud fixtures: a migrated database (SQLite and PostgreSQL), a registered gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import make_engine, session_factory, transaction, upgrade
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath
from tests.cloud.helpers import DEVICES, unique_gateway

_migrated: set[str] = set()


def migrated(url: str) -> str:
    if url not in _migrated:
        upgrade(url)
        _migrated.add(url)
    return url


@pytest.fixture
def cloud_url(db_url: str) -> str:
    """A migrated database URL (both stores)."""
    return migrated(db_url)


@pytest.fixture
def sqlite_cloud_url(sqlite_url: str) -> str:
    return migrated(sqlite_url)


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
        register_gateway(session, path.community, path.compound, path.gateway, building="b1",
                         **DEVICES)
    return path
