"""Storage: SQLAlchemy models, engine and migrations."""

from cloud.db.engine import (
    make_engine,
    read_only,
    rowcount,
    seconds_between,
    session_factory,
    transaction,
)
from cloud.db.migrate import upgrade

__all__ = [
    "make_engine",
    "read_only",
    "rowcount",
    "seconds_between",
    "session_factory",
    "transaction",
    "upgrade",
]
