"""The contract with the gateway, end to end: the edge's outbox and uplink publish, the
cloud stores and acknowledges after its commit, and the outbox empties."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from cloud.db import models as m
from cloud.ingest import IngestWorker
from cloud.settings import Settings
from edge.commands import CommandHandler
from edge.outbox import Outbox
from edge.uplink import Uplink, UplinkSettings
from tests.cloud.helpers import event, reading, wait_for


def test_outbox_empties_only_through_cloud_acks(broker, cloud_url, factory, gw, tmp_path):
    host, port = broker
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.append_many([reading(0) if i % 5 else event(0, zone=f"z{i % 3}") for i in range(400)])
    assert outbox.depth == 400
    handler: list[CommandHandler] = []
    uplink = Uplink(
        gw,
        outbox,
        UplinkSettings(
            host=host, port=port, client_id=f"gw-{uuid.uuid4().hex[:8]}", resend_after_s=1.0
        ),
        # looked up per call: the handler is made below, once the uplink exists
        on_command=lambda topic, raw: handler[0].handle(topic, raw),  # noqa: PLW0108
    )
    handler.append(CommandHandler(gw, outbox, uplink.publish_reply))
    uplink.start()
    try:
        # no cloud yet: the broker took everything, but nothing may leave the outbox
        wait_for(lambda: uplink.published >= 400, timeout=20)
        assert outbox.depth == 400
        settings = Settings(
            database_url=cloud_url,
            broker_url=f"mqtt://{host}:{port}",
            environment="test",
            ingest_group=f"t{uuid.uuid4().hex[:10]}",
        )
        worker = IngestWorker(settings, factory).start()
        try:
            # what went out before the cloud subscribed is resent after the uplink's timeout
            wait_for(lambda: outbox.depth == 0, timeout=60)
        finally:
            worker.stop()
        with factory() as s:
            stored = s.scalar(
                select(func.count()).select_from(m.Ledger).where(m.Ledger.gateway == gw.gateway)
            )
            alerts = s.scalars(select(m.Alert).where(m.Alert.gateway == gw.gateway)).all()
        assert stored == 400
        assert sorted(a.count for a in alerts) == [26, 27, 27]  # 80 events over 3 zones
    finally:
        uplink.stop()
        outbox.close()
