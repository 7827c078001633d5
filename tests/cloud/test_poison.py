"""One poison message must not slow the ingest for everyone (issue 9 item 3): numbers and
times beyond what the databases store are refused at the door naming their field, and a
message the database itself refuses is found by bisection, not by a commit per message."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import models as m
from cloud.ingest import IngestWorker
from cloud.ingest.store import Incoming
from cloud.settings import Settings
from microbrain.protocol import Ack, GatewayPath
from tests.cloud.helpers import ack_of, ingest, mqtt_client, publish_all, reading, topic, wait_for


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _count(factory: sessionmaker[Session], model: type, **where: Any) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0)


def _raw(gw: GatewayPath, channel: str, number: int, **fields: Any) -> Incoming:
    body = json.loads(reading(number).to_json())
    body.update(fields)
    return Incoming(gw.topic(channel), json.dumps(body).encode(), datetime.now(UTC))


# (name, fields put into a valid reading, the field the refusal names)
NAMED = [
    ("seq beyond int64", {"seq": 2**63}, "seq"),
    ("time at the calendar's edge", {"ts": "0001-01-01T00:00:00+08:00"}, "ts"),
    ("time past the calendar", {"ts": "9999-12-31T23:59:59-14:00"}, "ts"),
    ("int value beyond int64", {"values": {"pressure_mpa": 2**63}}, "values"),
    ("samples beyond the INTEGER column", {"samples": 2**31}, "samples"),
]


@pytest.mark.parametrize(("name", "fields", "field"), NAMED, ids=[n for n, _, _ in NAMED])
def test_out_of_range_numbers_and_times_are_refused_at_the_door(factory, gw, name, fields, field):
    # among 60 valid readings: on PostgreSQL 50 or more go through COPY, the batch path
    # that a bigint out of range used to fail as a whole
    poison = _raw(gw, "reading", 1000, **fields)
    bad_payloads = REGISTRY.get_sample_value(
        "mb_ingest_rejected_total", {"reason": "invalid_payload"}
    )
    result = ingest(
        factory,
        gw,
        [reading(s) for s in range(1, 31)] + [poison] + [reading(s) for s in range(31, 61)],
    )
    assert (result.stored, result.rejected) == (60, 1), name
    with factory() as s:
        (dead,) = s.scalars(select(m.DeadLetter).where(m.DeadLetter.gateway == gw.gateway))
    assert dead.field == field, dead.reason
    assert "internal error" not in dead.reason  # refused by the protocol, not by the database
    # counted as a bad payload: a time outside the calendar is no clock running ahead
    after = REGISTRY.get_sample_value("mb_ingest_rejected_total", {"reason": "invalid_payload"})
    assert (after or 0.0) - (bad_payloads or 0.0) == 1, name
    assert _count(factory, m.ReadingRow, gateway=gw.gateway) == 60


@contextmanager
def _refusing_trigger(factory: sessionmaker[Session], marker: str) -> Iterator[None]:
    """A real trigger that refuses to insert a reading whose values name ``marker``: a
    message valid by the protocol that the database still refuses (a failing constraint,
    a bug meeting a strange row)."""
    with factory() as s, s.begin():
        if s.get_bind().dialect.name == "postgresql":
            s.execute(
                text(f"""
                CREATE FUNCTION {marker}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW."values"::text LIKE '%{marker}%' THEN
                        RAISE EXCEPTION 'reading refused by trigger {marker}';
                    END IF;
                    RETURN NEW;
                END $$""")
            )
            s.execute(
                text(
                    f"CREATE TRIGGER {marker} BEFORE INSERT ON readings "
                    f"FOR EACH ROW EXECUTE FUNCTION {marker}()"
                )
            )
        else:
            s.execute(
                text(f"""
                CREATE TRIGGER {marker} BEFORE INSERT ON readings
                WHEN NEW."values" LIKE '%{marker}%'
                BEGIN SELECT RAISE(ABORT, 'reading refused by trigger {marker}'); END""")
            )
    try:
        yield
    finally:
        with factory() as s, s.begin():
            s.execute(
                text(
                    f"DROP TRIGGER {marker}"
                    + (" ON readings" if s.get_bind().dialect.name == "postgresql" else "")
                )
            )
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text(f"DROP FUNCTION {marker}()"))


def _settings(url: str, broker: tuple[str, int] | None = None, **kw: Any) -> Settings:
    host, port = broker or ("127.0.0.1", 1883)
    return Settings(
        database_url=url,
        broker_url=f"mqtt://{host}:{port}",
        environment="test",
        ingest_group=f"t{uuid.uuid4().hex[:12]}",
        session_expiry_s=0,
        **kw,
    )


@pytest.mark.parametrize("size", [500, 2])
def test_one_poison_in_a_batch_is_found_by_bisection(cloud_url, factory, gw, size):
    marker = f"poison_{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    items = [Incoming(*topic(gw, reading(s)), now) for s in range(1, size)]
    poison_seq = size
    items.insert(size * 2 // 7, Incoming(*topic(gw, reading(poison_seq, values={marker: 1})), now))
    worker = IngestWorker(_settings(cloud_url), factory)  # not connected: its commit path only
    commits, retries = (
        _metric("mb_ingest_isolation_commits_total"),
        _metric("mb_ingest_batch_retries_total"),
    )
    transactions: list[object] = []

    def began(conn: object) -> None:  # what the database itself saw
        transactions.append(conn)

    engine = factory.kw["bind"]
    with _refusing_trigger(factory, marker):
        event.listen(engine, "begin", began)
        try:
            result = worker._commit_isolating(items)
        finally:
            event.remove(engine, "begin", began)
    spent = _metric("mb_ingest_isolation_commits_total") - commits
    # two halves per level down to the poison, and its dead letter: 19 for 500, where one
    # commit per message took 500
    bound = 2 * math.ceil(math.log2(size)) + 1
    assert 0 < spent <= bound, spent
    assert len(transactions) == spent + 1  # and the batch's own first try
    assert _metric("mb_ingest_batch_retries_total") == retries  # a refusal is not retried
    assert (result.stored, result.rejected) == (size - 1, 1)
    acked = {n for r in result.ack_ranges().values() for f, l in r for n in range(f, l + 1)}
    assert acked == set(range(1, size + 1))  # the poison is kept here, so acknowledged too
    assert _count(factory, m.ReadingRow, gateway=gw.gateway) == size - 1
    with factory() as s:
        (dead,) = s.scalars(select(m.DeadLetter).where(m.DeadLetter.gateway == gw.gateway))
        assert (
            s.scalar(
                select(func.count())
                .select_from(m.ReadingRow)
                .where(m.ReadingRow.gateway == gw.gateway, m.ReadingRow.seq == poison_seq)
            )
            == 0
        )
    assert "internal error" in dead.reason and marker in dead.reason
    assert marker.encode() in dead.payload


def test_poison_through_the_broker_leaves_every_valid_message_stored_and_acked(
    broker, cloud_url, factory, gw
):
    marker = f"poison_{uuid.uuid4().hex[:10]}"
    acks: list[Ack] = []
    worker = IngestWorker(_settings(cloud_url, broker, ingest_batch_latency_s=0.2), factory)
    with _refusing_trigger(factory, marker):
        worker.start()
        try:
            with mqtt_client(*broker) as pub:
                pub.on_message = lambda c, u, msg: acks.append(ack_of(msg))
                pub.subscribe(gw.topic("cmd", "ack"), qos=1)
                wire = [topic(gw, reading(s)) for s in range(1, 201)]
                wire.insert(50, topic(gw, reading(201, values={marker: 1})))  # the database refuses
                wire.insert(120, (gw.topic("reading"), _raw(gw, "reading", 202, seq=2**63).payload))
                wire.insert(
                    150,
                    (
                        gw.topic("reading"),
                        _raw(gw, "reading", 203, ts="0001-01-01T00:00:00+08:00").payload,
                    ),
                )
                publish_all(pub, wire)
                wait_for(
                    lambda: _count(factory, m.ReadingRow, gateway=gw.gateway) == 200, timeout=30
                )
                wait_for(lambda: _count(factory, m.DeadLetter, gateway=gw.gateway) == 3)

                def acked() -> set[int]:
                    return {n for a in list(acks) for f, l in a.ranges for n in range(f, l + 1)}

                # the seq 2^63 is never acknowledged (no outbox holds it); 203's ts was bad
                # but its seq is the gateway's, so it is
                wait_for(lambda: acked() >= set(range(1, 202)) | {203})
                assert worker.drain(10)
        finally:
            worker.stop()
    with factory() as s:
        reasons = {
            d.field: d.reason
            for d in s.scalars(select(m.DeadLetter).where(m.DeadLetter.gateway == gw.gateway))
        }
    assert set(reasons) == {None, "seq", "ts"}
    assert marker in reasons[None] and "internal error" in reasons[None]
