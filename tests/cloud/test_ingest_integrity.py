"""Data integrity at the ingest (issue 9 items 1, 2, 5, 6, 9): a reset outbox loses
nothing, id-less items are refused once, invalid UTF-8 is acknowledged, undeclared
devices raise no alert, and only the gateway a recheck went to may answer it. Through
the real broker and both databases where the item is about them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth, work_orders
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.db import models as m
from cloud.db import transaction
from cloud.ingest import IngestWorker
from cloud.ingest.records import AckTarget
from cloud.ingest.store import Incoming
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from edge.commands import CommandHandler
from edge.outbox import Outbox
from edge.uplink import Uplink, UplinkSettings
from microbrain.protocol import (
    Ack,
    Event,
    GatewayPath,
    GatewayState,
    Reading,
    Reply,
    Severity,
    Status,
)
from tests.cloud.helpers import (
    DEVICES,
    ack_of,
    event,
    ingest,
    mqtt_client,
    publish_all,
    reading,
    topic,
    wait_for,
)

EPOCH_A, EPOCH_B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


def _settings(broker: tuple[str, int], url: str, **kw: Any) -> Settings:
    host, port = broker
    return Settings(
        database_url=url,
        broker_url=f"mqtt://{host}:{port}",
        environment="test",
        ingest_group=f"t{uuid.uuid4().hex[:12]}",
        session_expiry_s=0,
        **kw,
    )


def _count(factory: sessionmaker[Session], model: type[m.Base], **where: object) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0)


def _dead(factory: sessionmaker[Session], gateway: str) -> list[m.DeadLetter]:
    with factory() as s:
        return list(
            s.scalars(
                select(m.DeadLetter)
                .where(m.DeadLetter.gateway == gateway)
                .order_by(m.DeadLetter.pk)
            )
        )


def _critical(zone: str) -> Event:
    return Event(
        kind="illegal_parking", source="cam-1", zone=zone, building="b1", severity=Severity.CRITICAL
    )


# --- 1. a reset outbox ---------------------------------------------------------------


def _send_all(gw: GatewayPath, outbox: Outbox, host: str, port: int) -> None:
    """Run an uplink with the cloud's acks until the outbox is empty."""
    handler: list[CommandHandler] = []
    uplink = Uplink(
        gw,
        outbox,
        UplinkSettings(
            host=host, port=port, resend_after_s=1.0, client_id=f"gw-{uuid.uuid4().hex[:8]}"
        ),
        on_command=lambda topic, raw: handler[0].handle(topic, raw),  # noqa: PLW0108 - set below
    )
    handler.append(CommandHandler(gw, outbox, uplink.publish_reply))
    uplink.start()
    try:
        wait_for(lambda: outbox.depth == 0, timeout=60)
    finally:
        uplink.stop()


def test_a_reset_outbox_loses_nothing(
    broker: tuple[str, int],
    cloud_url: str,
    factory: sessionmaker[Session],
    gw: GatewayPath,
    tmp_path: Path,
) -> None:
    # 30 items, the outbox file deleted (a replaced disk), 30 more: seq restarts at 1
    host, port = broker
    worker = IngestWorker(_settings(broker, cloud_url), factory).start()
    path = tmp_path / "outbox.db"
    epochs = []
    try:
        for zones in (("z0", "z1", "z2"), ("z3", "z4", "z5")):
            outbox = Outbox(path)
            epochs.append(outbox.epoch)
            items: list[Event | Reading] = [reading(0) for _ in range(27)]
            items += [_critical(z) for z in zones]
            stamped = outbox.append_many(items)
            assert [i.seq for i in stamped] == list(range(1, 31))
            _send_all(gw, outbox, host, port)
            outbox.close()
            path.unlink()
        assert worker.drain(10)
    finally:
        worker.stop()
    assert _count(factory, m.Ledger, gateway=gw.gateway) == 60
    assert _count(factory, m.ReadingRow, gateway=gw.gateway) == 54
    assert _count(factory, m.EventRow, gateway=gw.gateway) == 6
    assert _dead(factory, gw.gateway) == []
    with factory() as s:
        alerts = s.scalars(select(m.Alert).where(m.Alert.gateway == gw.gateway)).all()
        assert sorted((a.zone for a in alerts), key=str) == ["z0", "z1", "z2", "z3", "z4", "z5"]
        assert {a.severity for a in alerts} == {3}
        row = s.get_one(m.Gateway, gw.gateway)
        assert (row.epoch, row.epochs_seen, row.last_seq, row.seq_collisions) == (
            epochs[1],
            2,
            30,
            0,
        )
        assert set(
            s.scalars(select(m.GatewayEpoch.epoch).where(m.GatewayEpoch.gateway == gw.gateway))
        ) == set(epochs)


def _with(item: Event | Reading, epoch: str | None) -> Event | Reading:
    return item.model_copy(update={"epoch": epoch})


def test_new_epochs_are_counted_and_late_items_of_an_old_one_are_stored(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    before = REGISTRY.get_sample_value("mb_ingest_epochs_total", {"gateway": gw.gateway}) or 0.0
    first = ingest(factory, gw, [_with(reading(s), EPOCH_A) for s in (1, 2, 3)])
    # the outbox is made anew: its status says so before its first item arrives
    status = Status(state=GatewayState.ONLINE, epoch=EPOCH_B)
    ingest(factory, gw, [Incoming(gw.topic("status"), status.to_json(), datetime.now(UTC))])
    second = ingest(factory, gw, [_with(reading(s), EPOCH_B) for s in (1, 2)])
    late = ingest(factory, gw, [_with(reading(4), EPOCH_A)])  # still in flight from before
    assert (first.stored, second.stored, late.stored) == (3, 2, 1)
    assert (second.collisions, second.gaps, late.gaps) == (0, [], [])
    assert second.ack_ranges() == {AckTarget(gw, EPOCH_B): ((1, 2),)}
    assert late.ack_ranges() == {AckTarget(gw, EPOCH_A): ((4, 4),)}
    with factory() as s:
        row = s.get_one(m.Gateway, gw.gateway)
        assert (row.epoch, row.epochs_seen, row.last_seq, row.seq_gaps) == (EPOCH_B, 2, 2, 0)
    after = REGISTRY.get_sample_value("mb_ingest_epochs_total", {"gateway": gw.gateway})
    assert after == before + 2


def test_an_older_gateway_reset_without_epochs_is_stored_not_refused(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    ingest(factory, gw, [reading(1), reading(2), event(3)])
    # the same seqs again under new ids: a reset outbox of a gateway without epochs
    reset = [reading(1), reading(2), _critical("zz").model_copy(update={"seq": 3})]
    again = ingest(factory, gw, reset)
    assert (again.stored, again.rejected, again.collisions) == (3, 0, 3)
    assert again.ack_ranges() == {AckTarget(gw, None): ((1, 3),)}
    assert again.alerts  # the critical event opened its alert
    assert _count(factory, m.Ledger, gateway=gw.gateway) == 6
    with factory() as s:
        assert s.get_one(m.Gateway, gw.gateway).seq_collisions == 3
    # and their redelivery is a duplicate, not a second collision
    redelivered = ingest(factory, gw, reset)
    assert (redelivered.stored, redelivered.duplicates, redelivered.collisions) == (0, 3, 0)
    assert redelivered.ack_ranges() == {AckTarget(gw, None): ((1, 3),)}


def test_the_worker_acknowledges_each_epoch_with_its_own_ack(
    broker: tuple[str, int], cloud_url: str, factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    acks: list[Ack] = []
    worker = IngestWorker(_settings(broker, cloud_url, ingest_batch_latency_s=0.3), factory).start()
    try:
        with mqtt_client(*broker) as pub:
            pub.on_message = lambda c, u, msg: acks.append(ack_of(msg))
            pub.subscribe(gw.topic("cmd", "ack"), qos=1)
            items = [_with(reading(s), EPOCH_A) for s in (1, 2)]
            items += [_with(reading(s), EPOCH_B) for s in (1, 2, 3)] + [reading(9)]
            publish_all(pub, [topic(gw, i) for i in items])

            def by_epoch() -> dict[str | None, set[int]]:
                out: dict[str | None, set[int]] = {}
                for a in acks:
                    out.setdefault(a.epoch, set()).update(
                        n for f, last in a.ranges for n in range(f, last + 1)
                    )
                return out

            wait_for(lambda: by_epoch() == {EPOCH_A: {1, 2}, EPOCH_B: {1, 2, 3}, None: {9}})
    finally:
        worker.stop()


# --- 2. items without an id ----------------------------------------------------------


def test_an_item_without_an_id_is_refused_once_per_delivery_and_kept_once(
    broker: tuple[str, int], cloud_url: str, factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    body = json.loads(_critical("z1").model_copy(update={"seq": 7}).to_json())
    del body["id"]
    raw = json.dumps(body).encode()
    acks: list[Ack] = []
    worker = IngestWorker(_settings(broker, cloud_url), factory).start()
    try:
        with mqtt_client(*broker) as pub:
            pub.on_message = lambda c, u, msg: acks.append(ack_of(msg))
            pub.subscribe(gw.topic("cmd", "ack"), qos=1)
            for _ in range(3):  # the same id-less event delivered three times
                publish_all(pub, [(gw.topic("event"), raw)])
                assert worker.drain(10)
            wait_for(lambda: sum(d.count for d in _dead(factory, gw.gateway)) == 3)
            wait_for(lambda: len(acks) >= 1)
    finally:
        worker.stop()
    (dead,) = _dead(factory, gw.gateway)
    assert dead.count == 3 and dead.field == "id" and "no 'id'" in dead.reason
    assert {(a.ranges, a.epoch) for a in acks} == {(((7, 7),), None)}  # kept, so acknowledged
    assert _count(factory, m.EventRow, gateway=gw.gateway) == 0
    assert _count(factory, m.Alert, gateway=gw.gateway) == 0


# --- 5. invalid UTF-8 ----------------------------------------------------------------


def test_invalid_utf8_with_a_seq_is_acknowledged_and_dead_lettered(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    good = _with(reading(7), EPOCH_A).to_json()
    broken = good.replace(b'"kind":"hydrant_pressure"', b'"kind":"hydrant_\xff\xfe"')
    assert broken != good
    # a "seq" inside detail must not be taken for the item's own
    nested = json.loads(event(8).to_json())
    nested["detail"] = {"seq": 99}
    nested["message"] = "x"
    bad_event = json.dumps(nested).encode().replace(b'"message": "x"', b'"message": "\xc3("')
    result = ingest(
        factory,
        gw,
        [
            Incoming(gw.topic("reading"), broken, datetime.now(UTC)),
            Incoming(gw.topic("event"), bad_event, datetime.now(UTC)),
        ],
    )
    assert (result.stored, result.rejected) == (0, 2)
    assert result.ack_ranges() == {
        AckTarget(gw, EPOCH_A): ((7, 7),),
        AckTarget(gw, None): ((8, 8),),
    }
    assert len(_dead(factory, gw.gateway)) == 2


# --- 6. devices the site does not declare --------------------------------------------


def _unknown(gateway: str) -> float:
    return REGISTRY.get_sample_value("mb_ingest_unknown_device_total", {"gateway": gateway}) or 0.0


def test_an_undeclared_device_is_dead_lettered_not_alerted(
    broker: tuple[str, int], cloud_url: str, factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    ghost = Event(
        seq=1,
        kind="illegal_parking",
        source="ghost-cam",
        zone="z",
        building="b1",
        severity=Severity.CRITICAL,
    )
    stray = reading(2, sensor="ghost-sensor")
    own = Event(seq=3, kind="gateway_disk_low", source=gw.gateway)  # the gateway itself
    before = _unknown(gw.gateway)
    acks: list[Ack] = []
    worker = IngestWorker(_settings(broker, cloud_url), factory).start()
    try:
        with mqtt_client(*broker) as pub:
            pub.on_message = lambda c, u, msg: acks.append(ack_of(msg))
            pub.subscribe(gw.topic("cmd", "ack"), qos=1)
            publish_all(pub, [topic(gw, i) for i in (ghost, stray, own, event(4))])
            wait_for(
                lambda: (
                    {n for a in list(acks) for f, last in a.ranges for n in range(f, last + 1)}
                    >= {1, 2, 3, 4}
                )
            )
    finally:
        worker.stop()
    dead = _dead(factory, gw.gateway)
    assert sorted(d.field or "" for d in dead) == ["sensor", "source"]
    assert all("is not declared on gateway" in d.reason for d in dead)
    assert _unknown(gw.gateway) == before + 2
    with factory() as s:
        kinds = set(s.scalars(select(m.Alert.source).where(m.Alert.gateway == gw.gateway)))
        assert "ghost-cam" not in kinds and "cam-1" in kinds
        assert s.get_one(m.Gateway, gw.gateway).unknown_device_items == 2
    assert _count(factory, m.EventRow, gateway=gw.gateway) == 2  # its own and cam-1's


def test_the_gateways_api_shows_epochs_collisions_and_unknown_devices(
    factory: sessionmaker[Session], gw: GatewayPath
) -> None:
    ingest(
        factory,
        gw,
        [_with(reading(1), EPOCH_A), _with(reading(1), EPOCH_A), reading(5, sensor="ghost")],
    )
    ingest(factory, gw, [_with(reading(1), EPOCH_B)])
    name = f"u-{uuid.uuid4().hex[:8]}"
    with transaction(factory) as s:
        auth.create_user(
            s, name, "correct horse", "duty", now=datetime.now(UTC), community=gw.community
        )
    state = ApiState(settings=Settings(environment="test"), factory=factory)
    with TestClient(create_api(state)) as client:
        token = client.post("/api/auth/token", json={"username": name, "password": "correct horse"})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        (row,) = client.get("/api/devices/gateways", headers=headers).json()
    assert (row["epoch"], row["epochs_seen"], row["last_seq"]) == (EPOCH_B, 2, 1)
    assert (row["seq_collisions"], row["unknown_device_items"]) == (1, 1)


# --- 9. a recheck answered by another gateway ----------------------------------------


@pytest.fixture
def two_gateways(factory: sessionmaker[Session]) -> list[GatewayPath]:
    """gw-…-1 and gw-…-2 in one compound; an urban department for the work order."""
    tag = uuid.uuid4().hex[:8]
    paths = [GatewayPath(f"t-{tag}", "xiyuan", f"gw-xiyuan-{tag}-{n}") for n in (1, 2)]
    with transaction(factory) as s:
        for p in paths:
            register_gateway(s, p.community, p.compound, p.gateway, building="b1", **DEVICES)
        s.merge(m.Department(id="urban", name="城管中队", contacts=[]))
    return paths


def _order_verifying(factory: sessionmaker[Session], gw: GatewayPath) -> tuple[int, str]:
    now = datetime.now(UTC)
    (alert_id,) = ingest(factory, gw, [event(1, severity=Severity.CRITICAL)], now=now).alerts
    with transaction(factory) as s:
        wo = work_orders.dispatch(s, alert_id, actor="duty", now=now, department="urban")
        for action in ("accept", "start", "done"):
            work_orders.move(s, wo.id, action, actor="urban-1", now=now)
        _, path, recheck = work_orders.request_verification(s, wo.id, actor="duty", now=now)
        assert path == gw
        return wo.id, recheck.id


def test_only_the_gateway_a_recheck_went_to_may_answer_it(
    broker: tuple[str, int],
    cloud_url: str,
    factory: sessionmaker[Session],
    two_gateways: list[GatewayPath],
) -> None:
    mine, other = two_gateways
    wo_id, recheck_id = _order_verifying(factory, mine)
    answer = Reply(name="recheck", command_id=recheck_id, ok=True, detail={"present": False})
    worker = IngestWorker(_settings(broker, cloud_url), factory).start()
    try:
        with mqtt_client(*broker) as pub:
            # the other gateway answers on its own reply topic, which the broker allows
            publish_all(pub, [(other.topic("reply", "recheck"), answer.to_json())])
            wait_for(lambda: _dead(factory, other.gateway))
            with factory() as s:
                assert s.get_one(m.WorkOrder, wo_id).status == "verifying"
            (dead,) = _dead(factory, other.gateway)
            assert dead.field == "command_id" and mine.gateway in dead.reason
            # the gateway it was sent to answers: that counts
            publish_all(pub, [(mine.topic("reply", "recheck"), answer.to_json())])
            wait_for(lambda: _status(factory, wo_id) == "verified")
    finally:
        worker.stop()
    with factory() as s:
        actors = list(
            s.scalars(
                select(m.WorkOrderTransition.actor).where(
                    m.WorkOrderTransition.work_order_id == wo_id,
                    m.WorkOrderTransition.to_status == "verified",
                )
            )
        )
        assert actors == [f"edge:{mine.gateway}"]
        assert s.get_one(m.WorkOrder, wo_id).recheck_gateway == mine.gateway


def _status(factory: sessionmaker[Session], wo_id: int) -> str:
    with factory() as s:
        return str(s.get_one(m.WorkOrder, wo_id).status)


@pytest.mark.parametrize(
    ("reply", "present", "why"),
    [
        (Reply(name="recheck", ok=True, detail={"present": True}), True, None),
        (Reply(name="recheck", ok=True, detail={"camera": "online"}), None, "without a verdict"),
        (Reply(name="recheck", ok=False, reason="camera offline"), None, "camera offline"),
    ],
)
def test_the_recheck_verdict_is_read_by_the_work_orders(
    reply: Reply, present: bool | None, why: str | None
) -> None:
    verdict = work_orders.recheck_verdict(reply)
    assert verdict.present is present
    assert (why is None) or (verdict.reason is not None and why in verdict.reason)


def test_a_reply_to_an_unknown_recheck_changes_nothing_and_is_not_refused(
    factory: sessionmaker[Session], two_gateways: list[GatewayPath]
) -> None:
    # a reply naming no known recheck changes nothing and is not refused: there is nothing
    # to protect, and the gateway learns nothing about other gateways' commands
    _, other = two_gateways
    reply = Reply(name="recheck", command_id=str(uuid.uuid4()), ok=True, detail={"present": False})
    r = ingest(
        factory,
        other,
        [
            Incoming(
                other.topic("reply", "recheck"),
                reply.to_json(),
                datetime.now(UTC) - timedelta(seconds=1),
            )
        ],
    )
    assert (r.applied, r.rejected) == (1, 0)
