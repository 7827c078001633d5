"""Alembic environment: online migrations only, guarded so that several cloud
processes starting at once migrate one at a time."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from cloud.db.engine import make_engine
from cloud.db.models import Base

config = context.config
ADVISORY_LOCK = 0x6D62_0005  # "mb" issue 5: any constant shared by all cloud processes


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK})
                connection.commit()
    engine.dispose()


run_migrations_online()
