"""Rollouts through the scheduler step with a clock the test moves: installs go out on the
real broker, the gateways' replies and heartbeats come back through the real ingest."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
from prometheus_client import REGISTRY
from sqlalchemy import select

from cloud.alerts.verdicts import give_verdict
from cloud.db import models as m
from cloud.db import transaction
from cloud.model_registry import step as rollout_step
from cloud.permissions import Role
from microbrain.protocol import Ack, GatewayPath, ModelInstall, ModelRef, decode
from microbrain.signing import parse_public_key, verify_manifest
from tests.cloud.helpers import event, ingest, mqtt_client, wait_for
from tests.cloud.model_registry.conftest import Registry, evaluation


class Inbox:
    """The ModelInstall commands each gateway received on the real broker."""

    def __init__(self) -> None:
        self.got: dict[str, list[ModelInstall]] = defaultdict(list)
        self.acks = 0  # markers a test sends behind the installs
        self._lock = threading.Lock()

    def on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        command = decode(msg.topic, bytes(msg.payload)).payload
        with self._lock:
            if isinstance(command, Ack):
                self.acks += 1
                return
            assert isinstance(command, ModelInstall)
            self.got[msg.topic.split("/")[4]].append(command)

    def count(self, gw: GatewayPath) -> int:
        with self._lock:
            return len(self.got[gw.gateway])

    def last(self, gw: GatewayPath) -> ModelInstall:
        with self._lock:
            return self.got[gw.gateway][-1]


@contextmanager
def inbox(registry: Registry, *gateways: GatewayPath) -> Iterator[Inbox]:
    box = Inbox()
    host, port = registry.settings.broker_host, registry.settings.broker_port
    with mqtt_client(host, port) as client:
        client.on_message = box.on_message
        for gw in gateways:
            client.subscribe(gw.topic("cmd", "model"), qos=1)
        client.subscribe(gateways[0].topic("cmd", "ack"), qos=1)
        # a subscription is in place once a message to it comes back
        probe = gateways[0].topic("cmd", "probe")
        seen = threading.Event()
        client.message_callback_add(probe, lambda *_: seen.set())
        client.subscribe(probe, qos=1)

        def probed() -> bool:
            client.publish(probe, b"x", qos=1)
            return seen.wait(0.5)

        wait_for(probed, timeout=30)
        yield box


def step(registry: Registry) -> int:
    return rollout_step.run_step(
        registry.factory,
        registry.state.commands,
        registry.clock(),
        registry.settings.model_resend_s,
    )


def rollout(registry: Registry, model_id: int, gateways: list[GatewayPath], **kw: Any) -> dict:
    body = {
        "model_id": model_id,
        "target": {"kind": "gateway", "ids": [g.gateway for g in gateways]},
        **kw,
    }
    r = registry.client.post("/api/rollouts", headers=registry.headers["engineer"], json=body)
    assert r.status_code == 201, r.text
    return r.json()


def states(registry: Registry, rollout_id: int) -> dict[str, str]:
    r = registry.client.get(f"/api/rollouts/{rollout_id}", headers=registry.headers["engineer"])
    assert r.status_code == 200, r.text
    return {g["gateway"]: g["state"] for g in r.json()["gateways"]} | {"": r.json()["state"]}


def _models(registry: Registry) -> tuple[int, int]:
    eng = registry.headers["engineer"]
    old = registry.upload(registry.name, "1.0.0", eng).json()["id"]
    new = registry.upload(registry.name, "1.1.0", eng).json()["id"]
    return old, new


def test_canary_first_then_the_rest_after_it_is_healthy_for_the_configured_time(
    registry: Registry,
):
    old, new = _models(registry)
    a, b, c = (registry.gateway() for _ in range(3))
    for gw in (a, b, c):
        registry.heartbeat(gw, (registry.name, "1.0.0"), serial=None)
    public = parse_public_key(registry.client.get("/api/models/key").text)
    with inbox(registry, a, b, c) as box:
        made = rollout(registry, new, [a, b, c], canary=[a.gateway], canary_healthy_s=60)
        assert made["state"] == "canary" and made["previous_model_id"] == old
        serial = made["serial"]
        step(registry)
        wait_for(lambda: box.count(a) == 1)
        manifest = verify_manifest(public, box.last(a).manifest, box.last(a).signature)
        assert (manifest.serial, manifest.version, manifest.rollback) == (serial, "1.1.0", False)
        assert box.last(a).rollout == made["id"]
        assert states(registry, made["id"]) == {
            a.gateway: "sent",
            b.gateway: "pending",
            c.gateway: "pending",
            "": "canary",
        }
        registry.reply(a, True, state="installed", serial=serial, model=registry.name,
                       version="1.1.0", smoke_ms=12.0, rollout=made["id"])  # fmt: skip
        step(registry)
        registry.clock.advance(seconds=30)
        registry.heartbeat(a, (registry.name, "1.1.0"), serial=serial)
        step(registry)
        assert states(registry, made["id"])[""] == "canary"  # 30 s of 60: not yet
        assert box.count(b) == box.count(c) == 0
        registry.clock.advance(seconds=31)
        registry.heartbeat(a, (registry.name, "1.1.0"), serial=serial)
        step(registry)  # promoted, and the rest sent in the same step
        assert states(registry, made["id"]) == {
            a.gateway: "installed",
            b.gateway: "sent",
            c.gateway: "sent",
            "": "rolling",
        }
        wait_for(lambda: box.count(b) == 1 and box.count(c) == 1)
        # b answers; c's reply is lost but its heartbeat reports the new serial
        registry.reply(b, True, state="installed", serial=serial, model=registry.name,
                       version="1.1.0", smoke_ms=9.0, rollout=made["id"])  # fmt: skip
        registry.heartbeat(c, (registry.name, "1.1.0"), serial=serial)
        step(registry)
    done = registry.client.get(f"/api/rollouts/{made['id']}", headers=registry.headers["engineer"])
    body = done.json()
    assert body["state"] == "done" and body["counts"] == {"installed": 3}
    assert {g["running_version"] for g in body["gateways"]} == {f"{registry.name}@1.1.0"}
    # the registry shows which gateways run it, from their heartbeats
    registry.heartbeat(b, (registry.name, "1.1.0"), serial=serial)
    running = registry.client.get(f"/api/models/{new}", headers=registry.headers["engineer"])
    assert {r["gateway"] for r in running.json()["running_on"]} == {a.gateway, b.gateway, c.gateway}
    assert {r["serial"] for r in running.json()["running_on"]} == {serial}


def test_a_refusing_canary_aborts_the_rollout_and_the_rest_never_get_it(registry: Registry):
    _old, new = _models(registry)
    a, b = registry.gateway(), registry.gateway()
    for gw in (a, b):
        registry.heartbeat(gw, (registry.name, "1.0.0"))
    with inbox(registry, a, b) as box:
        made = rollout(registry, new, [a, b], canary=1, canary_healthy_s=0)
        step(registry)
        canary = a if states(registry, made["id"])[a.gateway] == "sent" else b
        rest = b if canary is a else a
        registry.reply(
            canary,
            False,
            "the file's sha256 does not match the signed manifest: download it again",
            state="refused",
            serial=made["serial"],
            running_version="1.0.0",
            rollout=made["id"],
        )
        step(registry)
        step(registry)
        body = registry.client.get(
            f"/api/rollouts/{made['id']}", headers=registry.headers["engineer"]
        ).json()
        assert body["state"] == "aborted"
        assert "sha256 does not match" in body["reason"]
        rows = {g["gateway"]: g for g in body["gateways"]}
        assert rows[canary.gateway]["state"] == "refused"
        assert "download it again" in rows[canary.gateway]["reason"]
        assert rows[rest.gateway]["state"] == "pending" and box.count(rest) == 0


def test_an_offline_gateway_gets_it_when_it_is_back_and_silence_is_resent(registry: Registry):
    _old, new = _models(registry)
    online, away = registry.gateway(), registry.gateway()
    registry.heartbeat(online, (registry.name, "1.0.0"))
    registry.offline(away)
    with inbox(registry, online, away) as box:
        made = rollout(registry, new, [online, away], canary=0)
        assert made["state"] == "rolling"
        step(registry)
        wait_for(lambda: box.count(online) == 1)
        assert states(registry, made["id"])[away.gateway] == "pending"
        # no answer from the online one: sent again once model_resend_s has passed
        registry.clock.advance(seconds=registry.settings.model_resend_s - 1)
        step(registry)
        registry.clock.advance(seconds=2)
        step(registry)
        wait_for(lambda: box.count(online) == 2)
        # the offline one comes back: its retained heartbeat says online, and it gets it
        registry.heartbeat(away, (registry.name, "1.0.0"))
        step(registry)
        wait_for(lambda: box.count(away) == 1)
        assert box.last(away).manifest == box.last(online).manifest  # one manifest, resent
        for gw in (online, away):
            registry.reply(gw, True, state="installed", serial=made["serial"],
                           model=registry.name, version="1.1.0", rollout=made["id"])  # fmt: skip
        step(registry)
    assert states(registry, made["id"])[""] == "done"
    with registry.factory() as s:
        sends = dict(
            s.execute(
                select(m.ModelRolloutGateway.gateway, m.ModelRolloutGateway.sends).where(
                    m.ModelRolloutGateway.rollout_id == made["id"]
                )
            ).all()
        )
    assert sends == {online.gateway: 2, away.gateway: 1}


def test_rollback_signs_a_higher_serial_for_the_previous_model(registry: Registry):
    old, new = _models(registry)
    a = registry.gateway()
    registry.heartbeat(a, (registry.name, "1.0.0"))
    public = parse_public_key(registry.client.get("/api/models/key").text)
    eng = registry.headers["engineer"]
    with inbox(registry, a) as box:
        made = rollout(registry, new, [a], canary=0)
        step(registry)
        registry.reply(a, True, state="installed", serial=made["serial"], model=registry.name,
                       version="1.1.0", rollout=made["id"])  # fmt: skip
        step(registry)
        r = registry.client.post(f"/api/rollouts/{made['id']}/rollback", headers=eng, json={})
        assert r.status_code == 201, r.text
        back = r.json()
        assert back["model_id"] == old and back["rollback"] and back["rollback_of"] == made["id"]
        assert back["serial"] > made["serial"]
        step(registry)
        wait_for(lambda: box.count(a) == 2)
        manifest = verify_manifest(public, box.last(a).manifest, box.last(a).signature)
        assert manifest.rollback and manifest.version == "1.0.0"
        assert manifest.serial == back["serial"]
    assert states(registry, made["id"])[""] == "rolled_back"
    again = registry.client.post(f"/api/rollouts/{made['id']}/rollback", headers=eng, json={})
    assert again.status_code == 409
    # one active rollout per gateway: a new one waits for the rollback to end
    clash = registry.client.post(
        "/api/rollouts",
        headers=eng,
        json={"model_id": new, "target": {"kind": "gateway", "ids": [a.gateway]}},
    )
    assert clash.status_code == 409 and f"rollout {back['id']}" in clash.json()["detail"]
    with registry.factory() as s:
        notes = list(
            s.scalars(
                select(m.AuditEntry.action).where(m.AuditEntry.target == f"rollout:{made['id']}")
            )
        )
    assert "model_rollback" in notes


def test_the_gate_refuses_a_worse_model_unless_forced_with_a_recorded_reason(
    registry: Registry,
):
    eng = registry.headers["engineer"]
    import json

    worse = registry.upload(
        registry.name, "0.9.0", eng, evaluation=json.dumps(evaluation(candidate_map=0.3))
    ).json()
    assert worse["gate"] and "mAP50" in worse["gate"][0]
    bare = registry.upload(registry.name, "0.9.1", eng, evaluation="").json()
    assert "no evaluation" in bare["gate"][0]
    # the console says the gate's reasons in its own language (zh-CN by default)
    page = _console_page(registry, "engineer", "/models")

    def model_row(model_id: int) -> str:
        html = page[page.index(f'id="model-{model_id}"') :]
        return html[: html.index("</tr>")]

    assert "mAP50 0.300 低于在用模型的 0.500" in model_row(worse["id"])
    assert "is below" not in model_row(worse["id"])
    assert "未登记评估结果" in model_row(bare["id"])
    a = registry.gateway()
    registry.heartbeat(a)
    body = {"model_id": worse["id"], "target": {"kind": "gateway", "ids": [a.gateway]}}
    r = registry.client.post("/api/rollouts", headers=eng, json=body)
    assert r.status_code == 409 and "mAP50 0.300 is below" in r.json()["detail"]
    r = registry.client.post("/api/rollouts", headers=eng, json={**body, "force": True})
    assert r.status_code == 422 and "force_reason" in r.text
    r = registry.client.post(
        "/api/rollouts",
        headers=eng,
        json={**body, "force": True, "force_reason": "ebike class needed on site now"},
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["forced"] and made["force_reason"] == "ebike class needed on site now"
    with registry.factory() as s:
        row = s.scalars(
            select(m.AuditEntry).where(
                m.AuditEntry.target == f"rollout:{made['id']}",
                m.AuditEntry.action == "model_rollout_forced",
            )
        ).one()
    assert row.actor == made["created_by"] and "ebike class needed" in (row.note or "")
    assert "mAP50" in (row.note or "")


def test_a_canary_with_more_false_positives_than_the_previous_model_aborts(
    registry: Registry,
):
    _old, new = _models(registry)
    a, b = registry.gateway(), registry.gateway()
    for gw in (a, b):
        registry.heartbeat(gw, (registry.name, "1.0.0"))

    def alerts(gw: GatewayPath, version: str, verdicts: list[str], first_seq: int) -> None:
        items = [
            event(
                first_seq + i,
                zone=f"z{first_seq + i}",
                model=ModelRef(name=registry.name, version=version),
            )
            for i in range(len(verdicts))
        ]
        result = ingest(registry.factory, gw, items, now=registry.clock())
        with transaction(registry.factory) as s:
            for alert_id, verdict in zip(sorted(result.alerts), verdicts, strict=True):
                give_verdict(s, alert_id, verdict, actor="duty", now=registry.clock())

    alerts(a, "1.0.0", ["confirmed", "confirmed", "false_positive", "confirmed"], 1)
    made = rollout(registry, new, [a, b], canary=[a.gateway], canary_healthy_s=3600,
                   fp_min_verdicts=3, abort_fp_ratio=1.5)  # fmt: skip
    step(registry)
    registry.reply(a, True, state="installed", serial=made["serial"], model=registry.name,
                   version="1.1.0", rollout=made["id"])  # fmt: skip
    registry.clock.advance(seconds=60)
    registry.heartbeat(a, (registry.name, "1.1.0"), serial=made["serial"])
    step(registry)
    assert states(registry, made["id"])[""] == "canary"
    # 2 of 3 false with the new model against 1 of 4 before: above 0.25 × 1.5
    alerts(a, "1.1.0", ["false_positive", "confirmed", "false_positive"], 10)
    step(registry)
    body = registry.client.get(
        f"/api/rollouts/{made['id']}", headers=registry.headers["engineer"]
    ).json()
    assert body["state"] == "aborted" and "false-positive rate" in body["reason"]
    assert {g["gateway"]: g["state"] for g in body["gateways"]}[b.gateway] == "pending"


def test_users_below_the_district_target_only_their_own_gateways(registry: Registry):
    mine, theirs = registry.gateway(), registry.gateway()
    for gw in (mine, theirs):
        registry.heartbeat(gw)
    _old, new = _models(registry)
    local = registry.user(Role.ENGINEER, community=mine.community)
    body = {"model_id": new, "target": {"kind": "gateway", "ids": [theirs.gateway]}}
    r = registry.client.post("/api/rollouts", headers=local, json=body)
    assert r.status_code == 404 and theirs.gateway in r.json()["detail"]
    r = registry.client.post(
        "/api/rollouts",
        headers=local,
        json={**body, "target": {"kind": "community", "ids": [theirs.community]}},
    )
    assert r.status_code == 404
    r = registry.client.post(
        "/api/rollouts", headers=local, json={**body, "target": {"kind": "all"}}
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert [g["gateway"] for g in made["gateways"]] == [mine.gateway]
    # the district engineer's rollout over both reads as missing to the local one
    other = registry.gateway()
    registry.heartbeat(other)
    wide = rollout(registry, new, [theirs, other], canary=0)
    assert registry.client.get(f"/api/rollouts/{wide['id']}", headers=local).status_code == 404
    listed = registry.client.get("/api/rollouts", headers=local).json()
    assert [x["id"] for x in listed] == [made["id"]]
    r = registry.client.post(
        f"/api/rollouts/{made['id']}/abort", headers=local, json={"reason": "x"}
    )
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    r = registry.client.post(f"/api/rollouts/{made['id']}/abort", headers=local, json={})
    assert r.status_code == 409


def test_the_console_page_shows_each_rollouts_state_per_gateway(registry: Registry):
    _old, new = _models(registry)
    a, b = registry.gateway(), registry.gateway()
    registry.heartbeat(a, (registry.name, "1.0.0"))
    registry.offline(b)
    made = rollout(registry, new, [a, b], canary=[a.gateway], canary_healthy_s=60)
    step(registry)
    registry.reply(a, False, "smoke test: outputs of shape (1, 3) where (1, 84, N) was expected",
                   state="failed", serial=made["serial"], rollout=made["id"])  # fmt: skip
    step(registry)
    refused = _console_page(registry, "duty", "/models", status=403)
    assert "smoke test" not in refused
    html = _console_page(registry, "engineer", "/models")
    section = html[html.index(f'id="rollout-{made["id"]}"') :]
    section = section[: section.index("</article>")]
    assert "已中止" in section and "smoke test: outputs of shape" in section
    assert f'data-gateway="{a.gateway}"' in section and "失败" in section
    assert f'data-gateway="{b.gateway}"' in section and "待发送" in section and "离线" in section
    assert f"{registry.name}@1.1.0" in html and 'href="/models"' in html


def test_replies_about_other_rollouts_are_dead_lettered_and_stale_ones_ignored(
    registry: Registry,
):
    _old, new = _models(registry)
    a, stranger = registry.gateway(), registry.gateway()
    for gw in (a, stranger):
        registry.heartbeat(gw, (registry.name, "1.0.0"))
    made = rollout(registry, new, [a], canary=0)
    step(registry)
    before = (
        REGISTRY.get_sample_value("mb_model_rollout_replies_ignored_total", {"why": "foreign"})
        or 0.0
    )
    # a gateway the rollout does not target claims to have installed it
    registry.reply(stranger, True, state="installed", serial=made["serial"],
                   model=registry.name, version="1.1.0", rollout=made["id"])  # fmt: skip
    registry.reply(a, True, state="installed", serial=made["serial"],
                   model=registry.name, version="1.1.0", rollout=987654321)  # fmt: skip
    with registry.factory() as s:
        letters = list(
            s.scalars(
                select(m.DeadLetter.reason).where(
                    m.DeadLetter.gateway.in_([stranger.gateway, a.gateway])
                )
            )
        )
    assert len(letters) == 2 and all("which does not target it" in r for r in letters)
    after = REGISTRY.get_sample_value("mb_model_rollout_replies_ignored_total", {"why": "foreign"})
    assert after == before + 2
    # an "installed" of an older serial says nothing about this rollout
    registry.reply(a, True, state="installed", serial=made["serial"] - 1,
                   model=registry.name, version="1.0.0", rollout=made["id"])  # fmt: skip
    assert states(registry, made["id"])[a.gateway] == "sent"
    registry.reply(a, True, state="installed", serial=made["serial"],
                   model=registry.name, version="1.1.0", rollout=made["id"])  # fmt: skip
    assert states(registry, made["id"])[a.gateway] == "installed"
    # a late failure after the install does not undo it
    registry.reply(a, False, "download failed", state="failed", serial=made["serial"],
                   rollout=made["id"])  # fmt: skip
    assert states(registry, made["id"])[a.gateway] == "installed"


def _console_page(registry: Registry, role: str, path: str, status: int = 200) -> str:
    """``path`` of the console as a user of ``role``, logged in with the password form;
    the page must answer ``status``."""
    from cloud.console.session import COOKIE, CSRF_HEADER, csrf_for
    from tests.cloud.model_registry.conftest import PASSWORD

    client = registry.client
    client.cookies.clear()
    name = registry.named_user(Role(role))
    r = client.post(
        "/login",
        data={"username": name, "password": PASSWORD, "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    client.headers[CSRF_HEADER] = csrf_for(client.cookies[COOKIE])
    try:
        page = client.get(path)
        assert page.status_code == status, page.text
        return page.text
    finally:
        client.cookies.clear()
        client.headers.pop(CSRF_HEADER, None)
