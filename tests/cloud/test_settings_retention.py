"""Settings refuse default secrets outside dev; readings age out; shuffled replays fold once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from cloud.db import models as m
from cloud.db import transaction
from cloud.retention import prune_dead_letters, prune_readings
from cloud.settings import Settings
from microbrain.protocol import Event, EventState, Reading
from tests.cloud.helpers import event, ingest, reading


@pytest.mark.parametrize(
    ("env", "ok"),
    [
        ({"environment": "dev"}, True),
        ({"environment": "production"}, False),
        ({"environment": "production", "secret_key": "s" * 32}, False),
        ({"environment": "production", "secret_key": "s" * 32, "admin_password": "a" * 16}, True),
        ({"broker_url": "http://broker"}, False),
        ({"broker_url": "mqtt://broker:99999"}, False),  # refused at the door, not at connect time
        ({"broker_url": "mqtts://broker"}, False),  # the cloud has no TLS to the broker yet
        ({"broker_url": "mqtt://cloud:s3cret@broker:1884"}, True),
        ({"ingest_batch_size": 0}, False),
    ],
)
def test_settings_validated_at_the_door(env, ok):
    if ok:
        Settings(**env)
    else:
        with pytest.raises(ValidationError):
            Settings(**env)


def test_readings_age_out_and_events_stay(factory, gw):
    now = datetime.now(UTC)
    ingest(
        factory,
        gw,
        [
            reading(1, ts=now - timedelta(days=100)),
            reading(2, ts=now - timedelta(days=1)),
            event(3, ts=now - timedelta(days=100)),
        ],
        now=now,
    )
    with transaction(factory) as s:
        assert prune_readings(s, now=now, keep_days=90) >= 1
    with factory() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(m.ReadingRow)
                .where(m.ReadingRow.gateway == gw.gateway)
            )
            == 1
        )
        assert (
            s.scalar(
                select(func.count()).select_from(m.EventRow).where(m.EventRow.gateway == gw.gateway)
            )
            == 1
        )


def test_replayed_and_shuffled_duplicates_give_one_row_and_one_alert_each(factory, gw):
    items: list[Event | Reading] = [
        event(i, zone=f"z{i % 5}", source=f"cam-{i % 3}") for i in range(1, 61)
    ]
    items += [reading(i) for i in range(61, 101)]
    rng = random.Random(7)
    replay = items * 3
    rng.shuffle(replay)
    for chunk in (replay[:90], replay[90:200], replay[200:]):  # across batches, too
        ingest(factory, gw, chunk)
    with factory() as s:
        rows = s.scalar(
            select(func.count()).select_from(m.EventRow).where(m.EventRow.gateway == gw.gateway)
        )
        alerts = s.scalars(select(m.Alert).where(m.Alert.gateway == gw.gateway)).all()
        assert rows == 60
        assert (
            s.scalar(
                select(func.count())
                .select_from(m.ReadingRow)
                .where(m.ReadingRow.gateway == gw.gateway)
            )
            == 40
        )
        assert len(alerts) == 15 and sum(a.count for a in alerts) == 60  # 5 zones × 3 cameras
        assert len({a.key for a in alerts}) == 15


def test_clear_before_raise_in_a_shuffled_batch_ends_cleared(factory, gw):
    now = datetime.now(UTC)
    raised = event(1, ts=now - timedelta(seconds=10))
    cleared = event(2, ts=now, state=EventState.CLEARED)
    ingest(factory, gw, [cleared, raised])
    with factory() as s:
        (alert,) = s.scalars(select(m.Alert).where(m.Alert.gateway == gw.gateway))
        assert alert.status == "resolved" and alert.cleared


def test_dead_letters_age_out(factory, gw):
    from cloud.ingest.store import Incoming

    now = datetime.now(UTC)
    for days in (100, 1):  # two different bad items
        when = now - timedelta(days=days)
        ingest(factory, gw, [Incoming(gw.topic("reading"), b"not json %d" % days, when)], now=when)
    with transaction(factory) as s:
        assert prune_dead_letters(s, now=now, keep_days=90) >= 1
    with factory() as s:
        kept = s.scalars(
            select(m.DeadLetter.received_at).where(m.DeadLetter.gateway == gw.gateway)
        ).all()
    assert [k > now - timedelta(days=2) for k in kept] == [True]
