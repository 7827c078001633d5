"""Dead letters cannot fill the disk (issue 9 item 4): a sample and the sha256 of each
refused payload, a cap per gateway in rows and bytes over a rolling window, the rest
counted (metric, per gateway) and a ``gateway_junk`` alert for the gateway sending it."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import models as m
from cloud.db import transaction
from cloud.ingest import dead_letters
from cloud.ingest.dead_letters import Caps
from cloud.ingest.store import Incoming
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath
from tests.cloud.helpers import ingest, reading, unique_gateway

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
JUNK_BYTES = 250_000


@pytest.fixture(autouse=True)
def _process_caps() -> Iterator[None]:
    yield
    dead_letters.configure(None)  # back to the environment's


def _dropped_metric() -> float:
    return sum(
        REGISTRY.get_sample_value("mb_ingest_dead_letters_dropped_total", {"reason": r}) or 0.0
        for r in ("rows_cap", "bytes_cap")
    )


def _junk(gw: GatewayPath, n: int, at: datetime, seed: int = 1) -> list[Incoming]:
    rng = random.Random(seed)
    return [Incoming(gw.topic("reading"), rng.randbytes(JUNK_BYTES), at) for _ in range(n)]


def _kept(factory: sessionmaker[Session], gateway: str) -> tuple[int, int]:
    """Rows and bytes (payload, reason, topic) the gateway's dead letters hold."""
    size = (
        func.length(m.DeadLetter.payload)
        + func.length(m.DeadLetter.reason)
        + func.length(m.DeadLetter.topic)
    )
    with factory() as s:
        rows, used = s.execute(
            select(func.count(), func.coalesce(func.sum(size), 0)).where(
                m.DeadLetter.gateway == gateway
            )
        ).one()
    return int(rows), int(used)


def _db_bytes(url: str) -> int:
    path = Path(url.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _other_gateway(factory: sessionmaker[Session]) -> GatewayPath:
    other = unique_gateway()
    with transaction(factory) as session:
        register_gateway(session, other.community, other.compound, other.gateway, building="b1")
    return other


@pytest.mark.parametrize(
    "caps",
    [
        None,  # the defaults (Settings): the row cap binds first
        Caps(window=timedelta(days=1), max_rows=10_000, max_bytes=16 * 1024),  # the byte cap binds
    ],
    ids=["defaults", "byte-cap"],
)
def test_a_junk_flood_keeps_at_most_the_cap_and_counts_the_rest(
    cloud_url, factory, gw, caps, monkeypatch
):
    # the product's defaults, not the roomy cap the other cloud tests run with (conftest)
    monkeypatch.delenv("MB_CLOUD_DEAD_LETTER_MAX_ROWS", raising=False)
    monkeypatch.delenv("MB_CLOUD_DEAD_LETTER_MAX_BYTES", raising=False)
    dead_letters.configure(caps)
    cap = caps or Caps.from_settings(Settings())
    other = _other_gateway(factory)
    size_before = _db_bytes(cloud_url) if cloud_url.startswith("sqlite") else 0
    dropped_before = _dropped_metric()
    junk = _junk(gw, 200, T0)
    # 200 distinct 250 KB junk messages in 8 s, in batches as the worker takes them, with a
    # valid reading and another gateway's bad message in each batch
    for i in range(0, 200, 25):
        at = T0 + timedelta(seconds=i / 25)
        result = ingest(
            factory,
            gw,
            [
                *junk[i : i + 25],
                reading(i + 1, ts=at),
                Incoming(other.topic("reading"), b"not json %d" % i, at),
            ],
            now=at,
        )
        assert result.stored == 1 and result.rejected == 26
    rows, used = _kept(factory, gw.gateway)
    assert 0 < rows <= cap.max_rows and used <= cap.max_bytes, (rows, used)
    if caps is None:
        assert rows == cap.max_rows  # 1 KiB samples: the row cap is what binds
    with factory() as s:
        kept = s.scalars(select(m.DeadLetter).where(m.DeadLetter.gateway == gw.gateway)).all()
        digests = {hashlib.sha256(j.payload).hexdigest(): j.payload for j in junk}
        for row in kept:
            # a sample, and the hash of the whole payload it came from
            assert row.payload == digests[row.digest][: dead_letters.SAMPLE_BYTES]
            assert "exceeds" in row.reason
        assert s.get(m.Gateway, gw.gateway).dead_letters_dropped == 200 - rows
        assert s.get(m.Gateway, other.gateway).dead_letters_dropped == 0
        alerts = s.scalars(
            select(m.Alert).where(
                m.Alert.kind == "gateway_junk",
                m.Alert.community.in_([gw.community, other.community]),
            )
        ).all()
        assert [(a.gateway, a.source, a.status) for a in alerts] == [
            (gw.gateway, gw.gateway, "open")
        ]
        assert "keeps sending bad messages" in alerts[0].message
        assert (
            s.scalar(
                select(func.count())
                .select_from(m.ReadingRow)
                .where(m.ReadingRow.gateway == gw.gateway)
            )
            == 8
        )
    assert _dropped_metric() - dropped_before == 200 - rows
    # the other gateway's dead letters are all kept
    assert _kept(factory, other.gateway)[0] == 8
    if cloud_url.startswith("sqlite"):
        # 50 MB of junk used to grow the database by 80 MB
        assert _db_bytes(cloud_url) - size_before < 2 * 1024 * 1024


def test_the_cap_is_a_rolling_window_and_repeats_only_count(cloud_url, factory, gw):
    dead_letters.configure(Caps(window=timedelta(hours=1), max_rows=5, max_bytes=1024**2))
    first = _junk(gw, 8, T0, seed=2)
    ingest(factory, gw, first, now=T0)
    assert _kept(factory, gw.gateway)[0] == 5
    # the same bad item again counts in its row, even over the cap
    ingest(factory, gw, [first[0], first[0]], now=T0 + timedelta(minutes=1))
    with factory() as s:
        counts = sorted(
            s.scalars(select(m.DeadLetter.count).where(m.DeadLetter.gateway == gw.gateway))
        )
        assert counts == [1, 1, 1, 1, 3]
        assert s.get(m.Gateway, gw.gateway).dead_letters_dropped == 3
    # within the window: still dropped; once the first rows are older than it: kept again
    at = T0 + timedelta(minutes=59)
    ingest(factory, gw, _junk(gw, 2, at, seed=3), now=at)
    assert _kept(factory, gw.gateway)[0] == 5
    at = T0 + timedelta(minutes=61)
    ingest(factory, gw, _junk(gw, 2, at, seed=4), now=at)
    assert _kept(factory, gw.gateway)[0] == 7
    with factory() as s:
        assert s.get(m.Gateway, gw.gateway).dead_letters_dropped == 5
        (alert,) = s.scalars(
            select(m.Alert).where(m.Alert.kind == "gateway_junk", m.Alert.gateway == gw.gateway)
        )
        assert alert.count == 2  # two batches went over the cap: one alert, counting


def test_the_caps_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MB_CLOUD_DEAD_LETTER_MAX_ROWS", "7")
    monkeypatch.setenv("MB_CLOUD_DEAD_LETTER_MAX_BYTES", "65536")
    monkeypatch.setenv("MB_CLOUD_DEAD_LETTER_WINDOW_S", "600")
    dead_letters.configure(None)
    assert dead_letters.current_caps() == Caps(
        window=timedelta(minutes=10), max_rows=7, max_bytes=65536
    )
    assert os.environ["MB_CLOUD_DEAD_LETTER_MAX_ROWS"] == "7"
