"""Migrations: the models match them, and several processes may start at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from sqlalchemy import inspect

from cloud.db import make_engine, upgrade
from cloud.db.migrate import alembic_config
from tests.utils.services import postgres_database

ROOT = Path(__file__).resolve().parents[2]


def test_models_match_the_migrations(sqlite_url):
    upgrade(sqlite_url)
    command.check(alembic_config(sqlite_url))  # raises if a model change lacks a migration


def test_concurrent_upgrades_of_a_fresh_postgres_database():
    with postgres_database() as url:
        # three cloud processes starting together (alembic's context is per process)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", f"from cloud.db import upgrade; upgrade({url!r})"],
                cwd=ROOT,
                stderr=subprocess.PIPE,
            )
            for _ in range(3)
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()[-2000:]
        engine = make_engine(url)
        assert {"alerts", "events", "readings", "ingest_ledger", "escalation_deadlines"} <= set(
            inspect(engine).get_table_names()
        )
        engine.dispose()


def test_concurrent_upgrades_of_a_fresh_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", f"from cloud.db import upgrade; upgrade({url!r})"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
