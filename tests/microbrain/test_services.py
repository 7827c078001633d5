"""The test helpers' own contract: a fresh PostgreSQL database needs only the server."""

from __future__ import annotations

import pytest

from tests.utils import services


def test_postgres_database_needs_no_existing_database_but_the_builtin_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    # MB_TEST_PG_URL may name any database, even one that does not exist: the fresh one
    # is created from (and dropped through) the server's built-in 'postgres' database
    base = services.PG_URL.rsplit("/", 1)[0]
    monkeypatch.setattr(services, "PG_URL", f"{base}/mb_no_such_database")
    with services.postgres_database() as url:
        assert url.startswith(f"{base}/mb_test_")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == url.rsplit("/", 1)[1]
    with psycopg.connect(services.PG_URL, dbname="postgres") as conn:
        gone = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                            (url.rsplit("/", 1)[1],)).fetchone()[0]
    assert gone == 0
