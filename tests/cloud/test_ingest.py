"""Ingest against the real Mosquitto and both databases."""

from __future__ import annotations

import random
import uuid

from sqlalchemy import func, select

from cloud.db import models as m
from cloud.ingest import IngestWorker
from cloud.settings import Settings
from microbrain.protocol import Ack
from tests.cloud.helpers import ack_of, event, mqtt_client, publish_all, reading, topic, wait_for


def _settings(broker, url, **kw) -> Settings:
    # a group per test: a stopped worker's persistent session still takes its share
    kw.setdefault("ingest_group", f"t{uuid.uuid4().hex[:12]}")
    kw.setdefault("session_expiry_s", 0)
    host, port = broker
    return Settings(database_url=url, broker_url=f"mqtt://{host}:{port}", environment="test", **kw)


def _count(factory, model, **where) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model).filter_by(**where))


def test_events_and_readings_are_stored_once_and_acked_after_commit(broker, cloud_url, factory, gw):
    acks: list[Ack] = []
    worker = IngestWorker(_settings(broker, cloud_url), factory).start()
    try:
        with mqtt_client(*broker) as pub:
            pub.on_message = lambda c, u, msg: acks.append(ack_of(msg))
            pub.subscribe(gw.topic("cmd", "ack"), qos=1)
            items = [reading(s) for s in range(1, 41)] + [event(s) for s in range(41, 51)]
            wire = [topic(gw, i) for i in items]
            replay = wire + random.Random(5).sample(wire, len(wire))  # replayed and shuffled
            publish_all(pub, replay)
            wait_for(lambda: _count(factory, m.Ledger, gateway=gw.gateway) == 50)

            def acked() -> set[int]:
                return {n for a in list(acks) for f, l in a.ranges for n in range(f, l + 1)}

            wait_for(lambda: acked() >= set(range(1, 51)))
        assert acked() == set(range(1, 51))
        assert _count(factory, m.ReadingRow, gateway=gw.gateway) == 40
        assert _count(factory, m.EventRow, gateway=gw.gateway) == 10
        # ten events of one kind at one spot: one alert counting ten
        with factory() as s:
            alerts = s.scalars(select(m.Alert).where(m.Alert.gateway == gw.gateway)).all()
            assert [(a.count, a.status) for a in alerts] == [(10, "open")]
            assert s.get(m.Gateway, gw.gateway).last_seq == 50
    finally:
        worker.stop()


def test_two_workers_share_the_subscription_and_store_each_message_once(
    broker, cloud_url, factory, gw
):
    settings = _settings(broker, cloud_url, ingest_batch_size=200)
    stored = {0: 0, 1: 0}

    def counter(i):
        def hook(result):
            stored[i] += result.stored

        return hook

    workers = [IngestWorker(settings, factory, on_commit=counter(i)).start() for i in range(2)]
    try:
        with mqtt_client(*broker) as pub:
            items = [topic(gw, reading(s)) for s in range(1, 2001)]
            publish_all(pub, items + items[:300])  # and some redelivered
            wait_for(lambda: _count(factory, m.Ledger, gateway=gw.gateway) == 2000, timeout=60)
            for w in workers:
                assert w.drain(10)
        assert _count(factory, m.ReadingRow, gateway=gw.gateway) == 2000
        assert sum(stored.values()) == 2000 and min(stored.values()) > 0  # both took a share
    finally:
        for w in workers:
            w.stop()


def test_bad_messages_through_the_broker_never_stop_the_worker(broker, cloud_url, factory, gw):
    worker = IngestWorker(_settings(broker, cloud_url), factory).start()
    try:
        with mqtt_client(*broker) as pub:
            stranger = gw.__class__(gw.community, gw.compound, "gw-stranger")
            publish_all(
                pub,
                [
                    (stranger.topic("event"), event(1).to_json()),
                    (gw.topic("reading"), b"\x00not json"),
                    (gw.topic("event"), b"{" * 70_000),
                    topic(gw, reading(1)),
                ],
            )
            wait_for(lambda: _count(factory, m.ReadingRow, gateway=gw.gateway) == 1)
            wait_for(lambda: _count(factory, m.DeadLetter, gateway=gw.gateway) == 2)
            with factory() as s:
                reasons = s.scalars(
                    select(m.DeadLetter.reason).where(m.DeadLetter.topic == stranger.topic("event"))
                ).all()
            assert reasons and "not registered" in reasons[-1]
    finally:
        worker.stop()


def test_worker_rides_out_a_broker_restart(mosquitto, cloud_url, factory, gw):
    settings = _settings(("127.0.0.1", mosquitto.port), cloud_url)
    worker = IngestWorker(settings, factory).start()
    try:
        with mqtt_client("127.0.0.1", mosquitto.port) as pub:
            publish_all(pub, [topic(gw, reading(s)) for s in range(1, 101)])
        wait_for(lambda: _count(factory, m.ReadingRow, gateway=gw.gateway) == 100)
        mosquitto.kill()
        wait_for(lambda: not worker.connected.is_set(), timeout=10)
        mosquitto.start()
        wait_for(worker.connected.is_set, timeout=30)  # reconnected and subscribed again
        with mqtt_client("127.0.0.1", mosquitto.port) as pub:
            publish_all(pub, [topic(gw, reading(s)) for s in range(101, 201)])
        wait_for(lambda: _count(factory, m.ReadingRow, gateway=gw.gateway) == 200, timeout=20)
    finally:
        worker.stop()


def test_a_poison_message_is_dead_lettered_and_the_rest_stored(
    broker, cloud_url, factory, gw, monkeypatch
):
    # fault injection into our own code (not a library): storing one marked message raises
    # as a bug would
    import cloud.ingest.worker as worker_module
    from cloud.ingest.store import store_batch as real

    def buggy(session, items, now, **kw):
        if any(b"poison" in i.payload for i in items):
            raise RuntimeError("a bug met a strange message")
        return real(session, items, now, **kw)

    monkeypatch.setattr(worker_module, "store_batch", buggy)
    acks: list[Ack] = []
    worker = IngestWorker(_settings(broker, cloud_url, ingest_batch_latency_s=0.2), factory).start()
    try:
        with mqtt_client(*broker) as pub:
            pub.on_message = lambda c, u, msg: acks.append(ack_of(msg))
            pub.subscribe(gw.topic("cmd", "ack"), qos=1)
            items = [topic(gw, reading(s)) for s in range(1, 31)]
            items.insert(10, topic(gw, event(31, message="poison")))
            publish_all(pub, items)
            wait_for(lambda: _count(factory, m.ReadingRow, gateway=gw.gateway) == 30)
            wait_for(lambda: _count(factory, m.DeadLetter, gateway=gw.gateway) == 1)
            wait_for(
                lambda: (
                    {n for a in list(acks) for f, l in a.ranges for n in range(f, l + 1)}
                    >= set(range(1, 32))
                )
            )
        with factory() as s:
            (dead,) = s.scalars(select(m.DeadLetter).where(m.DeadLetter.gateway == gw.gateway))
        assert "internal error" in dead.reason and "RuntimeError" in dead.reason
    finally:
        worker.stop()


def test_a_value_the_database_would_refuse_is_dead_lettered_and_the_rest_stored(
    broker, cloud_url, factory, gw
):
    # a number beyond its column (PostgreSQL: integer out of range, a DataError; SQLite:
    # an int beyond 64 bits) blocked every gateway; it is now refused at the door, naming
    # the field (a message the database itself refuses: tests/cloud/test_poison.py)
    import json

    too_big = json.dumps({**json.loads(reading(21).to_json()), "samples": 2**63}).encode()
    acks: list[Ack] = []
    worker = IngestWorker(_settings(broker, cloud_url, ingest_batch_latency_s=0.2), factory).start()
    try:
        with mqtt_client(*broker) as pub:
            pub.on_message = lambda c, u, msg: acks.append(ack_of(msg))
            pub.subscribe(gw.topic("cmd", "ack"), qos=1)
            items = [topic(gw, reading(s)) for s in range(1, 21)]
            items.insert(7, (gw.topic("reading"), too_big))
            publish_all(pub, items)
            wait_for(lambda: _count(factory, m.ReadingRow, gateway=gw.gateway) == 20, timeout=20)
            wait_for(lambda: _count(factory, m.DeadLetter, gateway=gw.gateway) == 1)
            wait_for(
                lambda: (
                    {n for a in list(acks) for f, l in a.ranges for n in range(f, l + 1)}
                    >= set(range(1, 22))
                )
            )
        with factory() as s:
            (dead,) = s.scalars(select(m.DeadLetter).where(m.DeadLetter.gateway == gw.gateway))
            assert (
                s.scalar(
                    select(func.count())
                    .select_from(m.ReadingRow)
                    .where(m.ReadingRow.gateway == gw.gateway, m.ReadingRow.seq == 21)
                )
                == 0
            )
        assert dead.field == "samples" and "less than or equal to" in dead.reason
    finally:
        worker.stop()


def test_command_sender_is_not_connected_when_the_broker_refuses_it(tmp_path):
    import time

    from cloud.commands import MqttCommandSender
    from tests.utils.services import private_mosquitto

    (tmp_path / "passwd").write_text("")  # nobody may connect
    extra = f"allow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
    with private_mosquitto(tmp_path / "b", extra=extra) as broker:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/x.db",
            environment="test",
            broker_url=f"mqtt://cloud:wrong@127.0.0.1:{broker.port}",
        )
        sender = MqttCommandSender(settings)
        try:
            # the broker logs the refusal once it sent the CONNACK: poll for that, not a time
            deadline = time.monotonic() + 60
            while (
                "not authorised" not in broker.log.read_text(errors="replace")
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            assert "not authorised" in broker.log.read_text(errors="replace")
            time.sleep(0.2)  # the CONNACK's way back to the sender's thread
            assert not sender._connected.is_set()
        finally:
            sender.close()


def test_sqlite_transactions_on_one_file_serialise_read_then_write(sqlite_cloud_url):
    # two engines (as two processes would have) each read a counter, pause, write it + 1:
    # with real transactions neither update is lost and neither fails "database is locked"
    import threading
    import time

    from cloud.db import make_engine, session_factory, transaction
    from cloud.site_sync import register_gateway
    from tests.cloud.helpers import unique_gateway

    engines = [make_engine(sqlite_cloud_url) for _ in range(2)]
    factories = [session_factory(e) for e in engines]
    path = unique_gateway()
    with transaction(factories[0]) as s:
        register_gateway(s, path.community, path.compound, path.gateway, building="b1")
    errors: list[BaseException] = []

    def bump(factory) -> None:
        try:
            with transaction(factory) as s:
                gw = s.get_one(m.Gateway, path.gateway)
                seen = gw.seq_gaps or 0
                time.sleep(0.3)
                gw.seq_gaps = seen + 1
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=bump, args=(f,)) for f in factories]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        with factories[0]() as s:
            assert s.get_one(m.Gateway, path.gateway).seq_gaps == 2
    finally:
        for e in engines:
            e.dispose()


def test_the_cloud_does_not_receive_its_own_commands(broker, cloud_url, factory, gw):
    from cloud.ingest.store import BatchResult

    results: list[BatchResult] = []
    worker = IngestWorker(_settings(broker, cloud_url), factory, on_commit=results.append).start()
    try:
        with mqtt_client(*broker) as pub:
            publish_all(
                pub,
                [(gw.topic("cmd", "ack"), Ack(ranges=((1, 1),)).to_json()), topic(gw, reading(1))],
            )
            wait_for(lambda: _count(factory, m.ReadingRow, gateway=gw.gateway) == 1)
            assert worker.drain(10)
        assert sum(r.ignored for r in results) == 0  # the cmd never reached the ingest
    finally:
        worker.stop()


def test_acks_with_more_ranges_than_one_ack_may_carry_are_split(broker, cloud_url, factory, gw):
    from microbrain.protocol import MAX_ACK_RANGES

    acks: list[Ack] = []
    settings = _settings(broker, cloud_url, ingest_batch_size=5000, ingest_batch_latency_s=2.0)
    worker = IngestWorker(settings, factory).start()
    try:
        with mqtt_client(*broker) as pub:
            pub.on_message = lambda c, u, msg: acks.append(ack_of(msg))
            pub.subscribe(gw.topic("cmd", "ack"), qos=1)
            seqs = range(1, 2 * (MAX_ACK_RANGES + 100), 2)  # every other one: a range each
            publish_all(pub, [topic(gw, reading(s)) for s in seqs])
            wait_for(
                lambda: (
                    {n for a in list(acks) for f, l in a.ranges for n in range(f, l + 1)}
                    >= set(seqs)
                ),
                timeout=30,
            )
        assert len(acks) >= 2 and all(len(a.ranges) <= MAX_ACK_RANGES for a in acks)
    finally:
        worker.stop()
