"""The alert page's response panel: the playbook's next steps, how similar alerts ended,
each notification's state and the delivery log with the failed attempt's reason, in
the reader's language; screenshot for the eye."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from cloud import alerts
from cloud.db import transaction
from cloud.response import load_response
from tests.cloud.console.conftest import Console, log_in, screenshot


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _playbooks(tmp_path: Path) -> Path:
    path = tmp_path / "playbooks.yaml"
    path.write_text(
        f"""schema: 1
channels:
  - {{id: sink, type: log, path: '{tmp_path / "sent.jsonl"}'}}
  - {{id: robot, type: webhook, url: 'http://127.0.0.1:{_closed_port()}/x', timeout_s: 1}}
contacts:
  - {{id: duty-desk, name: 值班台, channels: [sink, robot]}}
playbooks:
  - id: charging
    kind: ebike_charging
    notify: [duty-desk]
    next_steps: [物业人员到场断电, 联系车主移车]
""",
        encoding="utf-8",
    )
    return path


def test_the_alert_page_shows_the_response_and_its_deliveries(
    console: Console, page: Any, tmp_path: Path
) -> None:
    gw = console.gateway()
    setup = load_response(_playbooks(tmp_path), site=None, environ={})
    responder = setup.responder(console.factory, None, secret="s", clock=console.state.clock)
    past = console.alert(gw, kind="ebike_charging", severity=3)
    responder.step()
    with transaction(console.factory) as s:
        alerts.resolve(s, past, actor="王师傅", now=console.state.clock(), note="已断电")
    alert_id = console.alert(gw, kind="ebike_charging", severity=3)
    responder.step()
    duty = console.user("duty", gw)
    log_in(page, console, duty, next_path=f"/alerts/{alert_id}")
    panel = page.locator(".detail-response")
    text = panel.inner_text()
    assert "物业人员到场断电" in text and "联系车主移车" in text
    assert "以往同类处置" in text and "王师傅" in text and "已断电" in text
    assert "已送达" in text  # the sink
    assert "待发送" in text  # the robot, waiting for its retry
    panel.locator("summary").click()
    assert "connect" in panel.inner_text().lower() or "refused" in panel.inner_text().lower()
    timeline = page.locator(".detail-timeline").inner_text()
    assert "预案响应" in timeline
    screenshot(page, "detail_response")
