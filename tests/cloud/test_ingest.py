"""Ingest against the real Mosquitto and both databases."""

from __future__ import annotations

import json
import random
import uuid

from sqlalchemy import func, select

from cloud.db import models as m
from cloud.ingest import IngestWorker
from cloud.settings import Settings
from microbrain.protocol import Ack, decode
from tests.cloud.helpers import event, mqtt_client, publish_all, reading, topic, wait_for


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
            pub.on_message = lambda c, u, msg: acks.append(decode(msg.topic, msg.payload).payload)
            pub.subscribe(gw.topic("cmd", "ack"), qos=1)
            items = [reading(s) for s in range(1, 41)] + [event(s) for s in range(41, 51)]
            wire = [topic(gw, i) for i in items]
            replay = wire + random.Random(5).sample(wire, len(wire))  # replayed and shuffled
            publish_all(pub, replay)
            wait_for(lambda: _count(factory, m.Ledger, gateway=gw.gateway) == 50)
            acked = wait_for(lambda: (lambda s: s if s >= set(range(1, 51)) else None)(
                {n for a in acks for f, l in a.ranges for n in range(f, l + 1)}))
        assert acked == set(range(1, 51))
        assert _count(factory, m.ReadingRow, gateway=gw.gateway) == 40
        assert _count(factory, m.EventRow, gateway=gw.gateway) == 10
        # ten events of one kind at one spot: one alert counting ten
        with factory() as s:
            alerts = s.scalars(select(m.Alert).where(m.Alert.gateway == gw.gateway)).all()
            assert [(a.count, a.status) for a in alerts] == [(10, "open")]
            assert s.get(m.Gateway, gw.gateway).last_seq == 50
    finally:
        worker.stop()
