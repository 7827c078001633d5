"""Run the Alembic migrations from code (no alembic.ini needed on the command line)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from cloud.db.engine import normalise_url

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; safe to call on every start."""
    command.upgrade(alembic_config(url), revision)
