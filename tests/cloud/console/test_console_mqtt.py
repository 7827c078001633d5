"""The whole path a duty officer depends on, with nothing short-circuited: a gateway's
critical event published over the real broker (127.0.0.1:1883), taken by the cloud's own
ingest (CloudService, as ``microbrain cloud`` runs it: API + console + ingest), stored,
and shown live in the queue of a logged-in console in real Chromium, with the popup.

The other console tests raise alerts by calling the ingest's store directly; this one
proves the broker → ingest → notifier → live feed → browser wiring that they skip."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from cloud.app import CloudService
from cloud.db import models as m
from cloud.settings import Settings
from microbrain.protocol import Severity
from tests.cloud.console.conftest import Console, log_in, screenshot
from tests.cloud.helpers import event, mqtt_client, publish_all, topic, wait_for
from tests.utils.api_server import serve

DEADLINE_MS = 30_000  # generous: the point is that it arrives, on a loaded machine too


@pytest.fixture
def cloud_console(broker: tuple[str, int], sqlite_cloud_url: str) -> Iterator[Console]:
    """CloudService on a fresh SQLite database and the machine's broker, served by uvicorn
    (whose lifespan starts the ingest); its own ingest group, so that other tests' clouds
    on the same broker do not take this test's messages."""
    host, port = broker
    settings = Settings(
        database_url=sqlite_cloud_url,
        broker_url=f"mqtt://{host}:{port}",
        environment="test",
        ingest_group=f"c{uuid.uuid4().hex[:10]}",
        session_expiry_s=0,
    )
    service = CloudService(settings, scheduler=False)
    with serve(service.app) as served:
        worker = service.worker
        assert worker is not None, "the lifespan did not start the ingest"
        # subscribed: a message published before then would go to no one
        assert worker.connected.wait(30), "the ingest did not subscribe within 30 s"
        yield Console(served, service.factory, service.state)


def test_an_event_over_mqtt_appears_live_with_its_popup(
    cloud_console: Console, broker: tuple[str, int], page: Any
) -> None:
    gw = cloud_console.gateway()
    duty = cloud_console.user("duty", gw)
    log_in(page, cloud_console, duty)
    page.wait_for_selector("body[data-live=open]", timeout=DEADLINE_MS)
    assert page.locator("#queue-rows tr.row").count() == 0  # a fresh database: nothing yet

    zone = f"fire-lane-{uuid.uuid4().hex[:6]}"
    ev = event(1, kind="illegal_parking", severity=Severity.CRITICAL, zone=zone)
    with mqtt_client(*broker) as client:
        publish_all(client, [topic(gw, ev)])

    # the row arrives without a reload; its id is the alert the ingest made of the event
    row = page.locator("#queue-rows tr.row").first
    row.wait_for(timeout=DEADLINE_MS)

    def stored_alert() -> int | None:  # a session per look: one would keep its snapshot
        with cloud_console.factory() as s:
            return s.scalar(select(m.EventRow.alert_id).where(m.EventRow.id == ev.id))

    alert_id = wait_for(stored_alert, timeout=DEADLINE_MS / 1000)
    with cloud_console.factory() as s:
        alert = s.get(m.Alert, alert_id)
        assert alert is not None and alert.gateway == gw.gateway and alert.zone == zone
    assert row.get_attribute("id") == f"alert-{alert_id}"
    assert "紧急" in row.inner_text()  # severity as text, beside colour and icon
    assert "消防通道违停" in row.inner_text()

    popup = page.locator("#popup.show")
    popup.wait_for(timeout=DEADLINE_MS)
    assert popup.get_attribute("data-alert") == str(alert_id)
    assert "消防通道违停" in popup.inner_text()
    expect(page.locator("#unreviewed-count")).to_have_text("1", timeout=DEADLINE_MS)
    screenshot(page, "queue-over-mqtt")
