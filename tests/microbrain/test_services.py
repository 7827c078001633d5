"""The test helpers' own contract: private brokers as `up` runs them, fresh PostgreSQL
databases that need only the server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from microbrain.broker.embedded import free_port
from tests.utils import services


def test_postgres_database_needs_no_existing_database_but_the_builtin_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    # MB_TEST_PG_URL may name any database, even one that does not exist: the fresh one
    # is created from (and dropped through) the server's built-in 'postgres' database
    base = services.PG_URL.rsplit("/", 1)[0]
    monkeypatch.setattr(services, "PG_URL", f"{base}/mb_no_such_database")
    with services.postgres_database() as url:
        assert url.startswith(f"{base}/mb_test_")
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT current_database()").fetchone()
            assert row is not None
            assert row[0] == url.rsplit("/", 1)[1]
    with psycopg.connect(services.PG_URL, dbname="postgres") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (url.rsplit("/", 1)[1],)
        ).fetchone()
        assert row is not None
        gone = row[0]
    assert gone == 0


def test_private_broker_runs_the_settings_up_runs(tmp_path: Path) -> None:
    from microbrain.broker.embedded import minimal_mosquitto_conf

    with services.private_mosquitto(tmp_path / "b") as broker:
        conf = broker.config.read_text()
        assert conf == minimal_mosquitto_conf("127.0.0.1", broker.port, tmp_path / "b")
        for line in (
            "autosave_on_changes false",
            "max_queued_bytes 0",
            "max_packet_size 262144",
            "persistent_client_expiration 14d",
            "allow_anonymous true",
        ):
            assert f"\n{line}\n" in conf
    # auth given as extra replaces the anonymous access
    with services.private_mosquitto(tmp_path / "c", extra="allow_anonymous false\n") as broker:
        conf = broker.config.read_text()
        assert "allow_anonymous true" not in conf and conf.endswith("allow_anonymous false\n")


def test_a_mosquitto_that_exits_fails_fast_with_its_log(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("listener 1 127.0.0.1\nno_such_option true\n")
    broker = services.MosquittoProcess(conf, free_port(), tmp_path / "mosquitto.log")
    began = time.monotonic()
    with pytest.raises(RuntimeError, match=r"mosquitto exited with .*no_such_option"):
        broker.start(timeout=300)
    # fails fast: long before its timeout, with room for a loaded machine's slow start
    assert time.monotonic() - began < 150
    assert broker.proc is None
