"""Sessions that only read do not take SQLite's write lock: with a writer holding it (the
ingest in the middle of a batch, another process), a GET still answers at once instead of
queueing behind it, so a burst of page loads cannot fill the API's threads while the
holder waits for one to commit."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import func, select, text

from cloud import auth
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.db import make_engine, read_only, session_factory, transaction
from cloud.db import models as m
from cloud.settings import Settings
from tests.utils.api_server import serve

DEADLINE_S = 10.0  # the busy timeout is 30 s: a read that queued for the lock misses this


@contextmanager
def _write_lock_held(url: str) -> Iterator[None]:
    """Another connection (as another process would) holds the write lock meanwhile."""
    con = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO departments (id, name, contacts) VALUES ('held', 'held', '[]')")
    try:
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


def _within(deadline: float, fn: Callable[[], Any]) -> Any:
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    worker.start()
    worker.join(deadline)
    assert out, f"still waiting after {deadline} s: the read queued behind the writer"
    return out[0]


def test_a_read_only_session_reads_while_another_connection_writes(
    sqlite_cloud_url: str,
) -> None:
    engine = make_engine(sqlite_cloud_url)
    readers = session_factory(read_only(engine))
    try:
        with _write_lock_held(sqlite_cloud_url):

            def count() -> int:
                with readers() as s:
                    return s.scalar(select(func.count()).select_from(m.Alert)) or 0

            assert _within(DEADLINE_S, count) == 0
            # and it does not see the writer's uncommitted row (a snapshot, not a dirty read)
            with readers() as s:
                held = s.execute(text("SELECT count(*) FROM departments WHERE id = 'held'"))
                assert held.scalar() == 0
    finally:
        engine.dispose()


def test_a_get_answers_while_the_write_lock_is_held(sqlite_cloud_url: str) -> None:
    engine = make_engine(sqlite_cloud_url)
    factory = session_factory(engine)
    state = ApiState(
        settings=Settings(environment="test"),
        factory=factory,
        readers=session_factory(read_only(engine)),
    )
    with transaction(factory) as s:
        user = auth.create_user(s, "reader", "correct horse", auth.Role.ADMIN, now=state.clock())
        token = auth.issue_token(s, user, now=state.clock(), ttl_s=3600)
    try:
        with serve(create_api(state)) as served, _write_lock_held(sqlite_cloud_url):
            headers = {"Authorization": f"Bearer {token}"}

            def get() -> int:
                r = httpx.get(f"{served.url}/api/alerts", headers=headers, timeout=60)
                return r.status_code

            assert _within(DEADLINE_S, get) == 200
    finally:
        engine.dispose()
