"""Run the Alembic migrations from code (no alembic.ini needed on the command line)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from cloud.db.engine import normalise_url

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


@contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    # several processes starting at once on one SQLite file migrate one at a time
    # (PostgreSQL takes an advisory lock in env.py instead)
    database = make_url(normalise_url(url)).database
    if not url.startswith("sqlite") or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; safe to call on every start, from
    several processes at once."""
    with _sqlite_file_lock(url):
        command.upgrade(alembic_config(url), revision)
