"""Engine and sessions: one code path for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Engine,
    Result,
    create_engine,
    event,
    func,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

# an execution option: this engine's sessions only read (see read_only)
READ_ONLY = "mb_read_only"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the postgres extra installs it)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout, foreign keys and transactions
    that take the write lock when they begin (see below)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers (API) run while the ingest writes; NORMAL is durable in WAL
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            # pysqlite by default opens a transaction only before a write, so a read-then-
            # write "transaction" is not one, and SELECT ... FOR UPDATE means nothing on
            # SQLite. SQLAlchemy's documented recipe: the driver does no transaction
            # handling of its own, and the "begin" hook below starts each transaction.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock at BEGIN: writers (ingest workers, API,
            # scheduler, in any process on this file) run one at a time, waiting up to the
            # busy timeout, instead of two reading, then one failing ("database is locked")
            # or overwriting what the other read. Sessions of a read_only() engine begin
            # a plain (deferred) transaction instead: under WAL a reader sees a snapshot
            # and neither waits for writers nor holds them up
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_only(engine: Engine) -> Engine:
    """The engine for sessions that only read (GET requests, the live feed). On SQLite
    they do not take the write lock: a page load never waits behind the ingest, and a
    burst of readers cannot fill the API's threads waiting for the lock while the
    request that holds it waits for a thread to commit (the deadlock fifty consoles
    found). Only read in them: a write there may fail with "database is locked" while
    another session writes. On PostgreSQL the option changes nothing."""
    return engine.execution_options(**{READ_ONLY: True})


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE/DELETE changed: the count that decides which of two racing
    processes won a guarded step (Session.execute types its result as a plain Result)."""
    return int(cast("CursorResult[Any]", result).rowcount)


def seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    """``end - start`` in seconds, in SQL (SQLite keeps times as text, PostgreSQL as
    timestamptz: each has its own arithmetic)."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return cast(ColumnElement[float], func.extract("epoch", end - start))
