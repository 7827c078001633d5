"""Who may do what, through the real app and database: every route with an id × every
role × (own area, another area, an id that does not exist).

A role the table (cloud/permissions.py) refuses gets the same 403 whatever the id; an
allowed role gets the route's success in its own area, and for another area exactly the
404 body an id that does not exist gets (ids do not tell what exists elsewhere).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth, evidence
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.appeals import intake, photos
from cloud.appeals.config import AppealSettings
from cloud.clock import ManualClock
from cloud.commands import MqttCommandSender
from cloud.db import models as m
from cloud.db import transaction
from cloud.model_registry import keys as model_keys
from cloud.model_registry import rollouts as model_rollouts
from cloud.permissions import ROLE_ACTIONS, Action, Role, allows, may_grant
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from cloud.warning import hotspots
from cloud.warning.hotspots import HotspotPolicy
from microbrain.protocol import EvidenceKind, EvidenceRef, GatewayPath, Severity
from tests.cloud.helpers import DEVICES, event, ingest, reading, unique_gateway

JPEG = b"\xff\xd8\xff\xe0" + b"snapshot" * 64 + b"\xff\xd9"
_HASH: list[str] = []  # one argon2 hash for every test user: hashing is the slow part


def _password_hash() -> str:
    if not _HASH:
        _HASH.append(auth.hash_password("correct horse"))
    return _HASH[0]


@dataclass
class World:
    """Two areas (own: where the acting users are bound, other: another community),
    users of every role bound to the own community, and a district admin for setup."""

    client: TestClient
    factory: sessionmaker[Session]
    clock: ManualClock
    evidence_dir: Path
    own: GatewayPath
    other: GatewayPath
    headers: dict[Role, dict[str, str]] = field(default_factory=dict)
    setup: dict[str, str] = field(default_factory=dict)  # the district admin's headers
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def user(self, role: Role, place: GatewayPath | None) -> tuple[int, dict[str, str]]:
        with transaction(self.factory) as s:
            row = m.User(
                username=f"u-{uuid.uuid4().hex[:10]}",
                password_hash=_password_hash(),
                role=role.value,
                community=place.community if place else None,
                active=True,
                created_at=self.clock(),
            )
            s.add(row)
            s.flush()
            token = auth.issue_token(s, row, now=self.clock(), ttl_s=3600)
            return row.id, {"Authorization": f"Bearer {token}"}

    def alert(self, place: GatewayPath) -> int:
        n = next(self.seq)
        result = ingest(
            self.factory,
            place,
            [event(n, severity=Severity.CRITICAL, zone=f"z{n}")],
            now=self.clock(),
        )
        (alert_id,) = result.alerts
        return int(alert_id)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.client.request(method, path, headers=self.setup, **kw)
        assert r.status_code < 300, (path, r.status_code, r.text)
        return r.json() if r.content else None

    def resolved_alert(self, place: GatewayPath) -> int:
        alert_id = self.alert(place)
        self.call("POST", f"/api/alerts/{alert_id}/resolve", json={})
        return alert_id

    def work_order(self, place: GatewayPath, *moves: str) -> int:
        alert_id = self.alert(place)
        wo = self.call("POST", f"/api/alerts/{alert_id}/dispatch", json={})["id"]
        for move in moves:
            self.call("POST", f"/api/work-orders/{wo}/{move}", json={})
        return int(wo)

    def evidence_event(self, place: GatewayPath) -> str:
        ref = EvidenceRef(
            kind=EvidenceKind.SNAPSHOT,
            name="snap.jpg",
            sha256=hashlib.sha256(JPEG).hexdigest(),
            bytes=len(JPEG),
            content_type="image/jpeg",
        )
        ev = event(next(self.seq), evidence=(ref,), zone=f"e{uuid.uuid4().hex[:6]}")
        ingest(self.factory, place, [ev], now=self.clock())
        with self.factory() as s:
            row = s.query(m.EventRow).filter(m.EventRow.id == ev.id).one()
            path = evidence.path_for(self.evidence_dir, row, "snap.jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(JPEG)
        return ev.id

    def sensor(self, place: GatewayPath) -> str:
        ingest(self.factory, place, [reading(next(self.seq))], now=self.clock())
        return place.gateway

    def duty_user(self, place: GatewayPath) -> int:
        return self.user(Role.DUTY, place)[0]

    def appeal(self, place: GatewayPath, *, accepted: bool = False) -> int:
        """A resident's appeal at ``place``'s building b1 (through the intake service)."""
        with transaction(self.factory) as s:
            appeal, _key = intake.make(
                s,
                intake.AppealIn(
                    community=place.community,
                    compound=place.compound,
                    building="b1",
                    text="楼道里有人给电动车充电，电线从窗户拉下来",
                    phone="13800000000",
                ),
                settings=AppealSettings(),
                secret="scope-test",
                now=self.clock(),
            )
            if accepted:
                appeal.status = "accepted"
            return int(appeal.id)

    def handover(self, place: GatewayPath) -> int:
        """A stored shift handover of a desk at ``place``'s compound."""
        now = self.clock()
        with transaction(self.factory) as s:
            row = m.ShiftHandover(
                desk=f"desk-{uuid.uuid4().hex[:8]}",
                desk_name="物业值班室",
                community=place.community,
                compound=place.compound,
                shift_start=now,
                previous_start=now,
                made_at=now,
                body={"counts": {}, "lists": {}},
            )
            s.add(row)
            s.flush()
            return int(row.id)

    def appeal_with_photo(self, place: GatewayPath) -> int:
        """An appeal with one stored photo (where the app looks: evidence_dir/appeals)."""
        appeal_id = self.appeal(place)
        settings = AppealSettings()
        with transaction(self.factory) as s:
            appeal = s.get_one(m.Appeal, appeal_id)
            (checked,) = photos.check([photos.PhotoIn(JPEG, "snap.jpg")], settings)
            (path,) = photos.store(self.evidence_dir / "appeals", appeal.ticket, [checked])
            s.add(
                m.AppealPhoto(
                    appeal_id=appeal_id,
                    n=checked.n,
                    sha256=checked.sha256,
                    content_type=checked.content_type,
                    bytes=len(checked.data),
                    path=path,
                )
            )
        return appeal_id

    def rollout(self, place: GatewayPath) -> str:
        """An active rollout, sent, of a new model to a fresh gateway at ``place``'s
        compound that ran a registered model before (so that it rolls back)."""
        now, tag = self.clock(), uuid.uuid4().hex[:8]
        key = model_keys.signing_key(self.evidence_dir.parent / "model-signing.key")
        with transaction(self.factory) as s:
            gw = register_gateway(s, place.community, place.compound, f"gw-m{tag}", "b1")
            old, new = (
                m.ModelVersion(
                    name=f"scope-{tag}", version=v, sha256="0" * 64, bytes=1,
                    card={"classes": ["person"], "input_size": 640}, uploaded_by="t",
                    created_at=now,
                )
                for v in ("1", "2")
            )  # fmt: skip
            s.add_all([old, new])
            s.flush()
            gw.health = {"model": {"name": old.name, "version": "1"}}
            admin = m.User(username="scope-setup", role=Role.ADMIN.value, community=None)
            target = model_rollouts.Target(kind="gateway", ids=(gw.id,))
            request = model_rollouts.RolloutRequest(
                model_id=new.id, target=target, canary=0, force=True, force_reason="scope test"
            )
            made = model_rollouts.create(s, key, request, user=admin, now=now)
            for row in model_rollouts.gateway_rows(s, made.id):
                row.state = model_rollouts.GatewayState.SENT
            return str(made.id)


Make = Callable[[World, GatewayPath], str]
MISSING_INT, MISSING_STR = "987654321012", "nothing-here-0"


@dataclass(frozen=True)
class Case:
    """One route: how to make its target in a place, and what success looks like."""

    method: str
    route: str  # the app's path template, e.g. /api/alerts/{alert_id}/close
    action: Action | None  # None: every role may (reading its own area)
    make: Make
    ok: int = 200
    body: dict[str, Any] | None = field(default_factory=dict)
    missing: str = MISSING_INT
    query: str = ""  # for list routes filtered by an id: ?alert_id={id}
    then: tuple[str, ...] = ()  # the path's parameters after the id, e.g. ("accept",)

    def url(self, target: str) -> str:
        values = iter((target, *self.then))
        path = re.sub(r"\{[a-z_]+\}", lambda _m: next(values), self.route)
        return path + self.query.replace("{id}", target)

    @property
    def name(self) -> str:
        return f"{self.method} {self.route}{self.query} {' '.join(self.then)}".strip()


def _alert(w: World, p: GatewayPath) -> str:
    return str(w.alert(p))


def _governance_item(w: World, p: GatewayPath) -> str:
    """An open governance item at ``p``: three alerts of one kind at b1 within the week
    (they join the place's item when one is still open)."""
    for _ in range(3):
        w.alert(p)
    with transaction(w.factory) as s:
        report = hotspots.evaluate(s, HotspotPolicy(), w.clock(), community=p.community)
    (change,) = report.changes
    return str(change.item_id)


CASES = [
    Case("GET", "/api/alerts/{alert_id}", None, _alert, body=None),
    Case("POST", "/api/alerts/{alert_id}/acknowledge", Action.ACKNOWLEDGE_ALERT, _alert),
    Case("POST", "/api/alerts/{alert_id}/dispatch", Action.DISPATCH_ALERT, _alert),
    Case("POST", "/api/alerts/{alert_id}/resolve", Action.RESOLVE_ALERT, _alert),
    Case(
        "POST",
        "/api/alerts/{alert_id}/close",
        Action.CLOSE_ALERT,
        lambda w, p: str(w.resolved_alert(p)),
    ),
    Case(
        "POST",
        "/api/alerts/{alert_id}/comment",
        Action.COMMENT_ALERT,
        _alert,
        body={"note": "seen"},
    ),
    Case("GET", "/api/alerts/{alert_id}/similar", None, _alert, body=None),
    Case("GET", "/api/alerts/{alert_id}/response", None, _alert, body=None),
    Case("GET", "/api/governance/{item_id}", None, _governance_item, body=None),
    Case(
        "POST",
        "/api/governance/{item_id}/close",
        Action.CLOSE_GOVERNANCE_ITEM,
        _governance_item,
        body={"note": "已整改"},
    ),
    Case("GET", "/api/alerts/{alert_id}/links", None, _alert, body=None),  # fusion
    Case(
        "GET",
        "/api/staff/appeals/{appeal_id}",
        None,
        lambda w, p: str(w.appeal(p)),
        body=None,
    ),
    Case(
        "GET",
        "/api/staff/appeals/{appeal_id}/photos/{n}",
        None,
        lambda w, p: str(w.appeal_with_photo(p)),
        body=None,
        then=("1",),
    ),
    Case(
        "POST",
        "/api/staff/appeals/{appeal_id}/{action}",
        Action.WORK_ON_APPEALS,
        lambda w, p: str(w.appeal(p)),
        then=("accept",),
    ),
    Case(
        "POST",
        "/api/alerts/{alert_id}/verdict",
        Action.GIVE_VERDICT,
        _alert,
        body={"verdict": "confirmed"},
    ),
    Case("POST", "/api/alerts/{alert_id}/escalate", Action.ESCALATE_ALERT, _alert),
    Case(
        "GET",
        "/api/handovers/{handover_id}",
        None,
        lambda w, p: str(w.handover(p)),
        body=None,
    ),
    Case(
        "POST",
        "/api/users/{user_id}/password",
        Action.MANAGE_USERS,
        lambda w, p: str(w.duty_user(p)),
        body={"password": "battery staple"},
    ),
    Case(
        "POST",
        "/api/users/{user_id}/reactivate",
        Action.MANAGE_USERS,
        lambda w, p: str(w.duty_user(p)),
    ),
    Case(
        "GET",
        "/api/work-orders/{work_order_id}",
        None,
        lambda w, p: str(w.work_order(p)),
        body=None,
    ),
    Case(
        "POST",
        "/api/work-orders/{work_order_id}/{action}",
        Action.WORK_ON_ORDERS,
        lambda w, p: str(w.work_order(p)),
        then=("accept",),
    ),
    Case(
        "POST",
        "/api/work-orders/{work_order_id}/{action}",
        Action.WORK_ON_ORDERS,
        lambda w, p: str(w.work_order(p, "accept")),
        then=("start",),
    ),
    Case(
        "POST",
        "/api/work-orders/{work_order_id}/{action}",
        Action.WORK_ON_ORDERS,
        lambda w, p: str(w.work_order(p, "accept", "start")),
        then=("done",),
    ),
    Case(
        "POST",
        "/api/work-orders/{work_order_id}/{action}",
        Action.WORK_ON_ORDERS,
        lambda w, p: str(w.work_order(p, "accept", "start", "done")),
        then=("verify",),
    ),
    Case(
        "GET",
        "/api/evidence/{event_id}/{name}",
        None,
        lambda w, p: w.evidence_event(p),
        body=None,
        missing=str(uuid.UUID(int=7)),
        then=("snap.jpg",),
    ),
    Case(
        "POST",
        "/api/users/{user_id}/deactivate",
        Action.MANAGE_USERS,
        lambda w, p: str(w.duty_user(p)),
    ),
    Case(
        "POST",
        "/api/users/{user_id}/revoke-tokens",
        Action.MANAGE_USERS,
        lambda w, p: str(w.duty_user(p)),
    ),
    Case(
        "PUT",
        "/api/gateways/{gateway_id}/password",
        Action.MANAGE_GATEWAYS,
        lambda w, p: p.gateway,
        ok=204,
        body={"password": "a-long-gateway-secret"},
        missing=MISSING_STR,
    ),
    # model rollouts: engineers and admins, for the gateways of their area
    Case(
        "GET",
        "/api/rollouts/{rollout_id}",
        Action.MANAGE_MODELS,
        lambda w, p: w.rollout(p),
        body=None,
    ),
    Case(
        "POST",
        "/api/rollouts/{rollout_id}/abort",
        Action.MANAGE_MODELS,
        lambda w, p: w.rollout(p),
    ),
    Case(
        "POST",
        "/api/rollouts/{rollout_id}/rollback",
        Action.MANAGE_MODELS,
        lambda w, p: w.rollout(p),
        ok=201,
    ),
    # lists filtered by an id: another area's id lists exactly what an unknown id lists
    Case("GET", "/api/events", None, _alert, body=None, query="?alert_id={id}"),
    Case(
        "GET",
        "/api/readings",
        None,
        lambda w, p: w.sensor(p),
        body=None,
        missing=MISSING_STR,
        query="?sensor=h1&gateway={id}",
    ),
    Case(
        "GET",
        "/api/devices",
        None,
        lambda w, p: p.gateway,
        body=None,
        missing=MISSING_STR,
        query="?gateway={id}",
    ),
]


@pytest.fixture
def world(
    factory: sessionmaker[Session], broker: tuple[str, int], tmp_path: Path
) -> Iterator[World]:
    host, port = broker
    settings = Settings(
        environment="test", broker_url=f"mqtt://{host}:{port}", evidence_dir=tmp_path / "evidence"
    )
    clock = ManualClock(datetime.now(UTC))
    sender = MqttCommandSender(settings)  # verify publishes a recheck on the real broker
    state = ApiState(settings=settings, factory=factory, clock=clock, commands=sender)
    own, other = unique_gateway(), unique_gateway()
    with transaction(factory) as s:
        for place in (own, other):
            register_gateway(
                s, place.community, place.compound, place.gateway, building="b1", **DEVICES
            )
    try:
        with TestClient(create_api(state)) as client:
            w = World(client, factory, clock, settings.evidence_dir, own, other)
            w.setup = w.user(Role.ADMIN, None)[1]
            for role in Role:
                w.headers[role] = w.user(role, own)[1]
            yield w
    finally:
        sender.close()


def _normal(body: str, target: str) -> str:
    return body.replace(target, "<id>")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_role_in_own_and_other_areas_and_for_missing_ids(world: World, case: Case) -> None:
    wrong: list[str] = []
    for role in Role:
        headers = world.headers[role]
        answers = {}
        for where in ("own", "other", "missing"):
            place = world.own if where == "own" else world.other
            target = case.missing if where == "missing" else case.make(world, place)
            kw: dict[str, Any] = {} if case.body is None else {"json": case.body}
            r = world.client.request(case.method, case.url(target), headers=headers, **kw)
            answers[where] = (r.status_code, _normal(r.text, target), r)
        may = case.action is None or allows(role, case.action)
        if not may:
            expected = {"own": 403, "other": 403, "missing": 403}
        elif case.query:
            expected = {"own": 200, "other": 200, "missing": 200}
        else:
            expected = {"own": case.ok, "other": 404, "missing": 404}
        got = {where: a[0] for where, a in answers.items()}
        if got != expected:
            wrong.append(
                f"{role}: expected {expected}, got {got}: "
                + " | ".join(f"{w}={a[2].text[:120]}" for w, a in answers.items())
            )
            continue
        if answers["other"][1] != answers["missing"][1]:
            wrong.append(
                f"{role}: another area's answer {answers['other'][1]!r} differs from a missing "
                f"id's {answers['missing'][1]!r}"
            )
        if case.query and may and not answers["own"][2].json():
            wrong.append(f"{role}: own area's list is empty")
        if not may and not (answers["own"][1] == answers["other"][1] == answers["missing"][1]):
            wrong.append(f"{role}: 403 bodies differ by id")
    assert not wrong, f"{case.name}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("role", list(Role))
def test_creating_users_only_inside_ones_area_at_nodes_that_exist(world: World, role: Role) -> None:
    headers = world.headers[role]

    def body(community: str | None, compound: str | None, new_role: str = "duty") -> dict[str, Any]:
        return {
            "username": f"n-{uuid.uuid4().hex[:8]}",
            "password": "long enough",
            "role": new_role,
            "community": community,
            "compound": compound,
        }

    own = world.client.post(
        "/api/users", headers=headers, json=body(world.own.community, world.own.compound)
    )
    other = world.client.post(
        "/api/users", headers=headers, json=body(world.other.community, world.other.compound)
    )
    nowhere = world.client.post("/api/users", headers=headers, json=body("no-such-community", None))
    bad_node = world.client.post(
        "/api/users", headers=headers, json=body(world.own.community, "no-such-compound")
    )
    if not allows(role, Action.MANAGE_USERS):
        assert {r.status_code for r in (own, other, nowhere, bad_node)} == {403}, own.text
        return
    assert own.status_code == 201, own.text
    # another community, existing or not, is outside: 403 either way, and the same words
    assert other.status_code == nowhere.status_code == 403
    assert other.json() == nowhere.json()
    assert bad_node.status_code == 422 and bad_node.json()["detail"].startswith("compound:"), (
        bad_node.text
    )
    with world.factory() as s:
        row = s.query(m.AuditEntry).filter(m.AuditEntry.target == f"user:{own.json()['id']}").one()
        assert row.action == "user_created"


def test_a_district_admin_cannot_create_a_user_at_a_community_that_does_not_exist(
    world: World,
) -> None:
    r = world.client.post(
        "/api/users",
        headers=world.setup,
        json={
            "username": f"n-{uuid.uuid4().hex[:8]}",
            "password": "long enough",
            "role": "duty",
            "community": "no-such-community",
        },
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("community:"), r.text


def test_district_wide_reads_need_a_district_user() -> None:
    # dead letters and the broker's files have no place; a community admin may not read them
    from cloud.errors import Forbidden
    from cloud.permissions import require

    def user(role: Role, community: str | None) -> m.User:
        return m.User(username="x", role=role.value, community=community)

    require(user(Role.ADMIN, None), Action.EXPORT_BROKER_FILES)
    require(user(Role.ENGINEER, None), Action.READ_DEAD_LETTERS)
    for role, community, action in (
        (Role.ADMIN, "c1", Action.EXPORT_BROKER_FILES),
        (Role.ADMIN, "c1", Action.READ_DEAD_LETTERS),
        (Role.ENGINEER, None, Action.EXPORT_BROKER_FILES),
        (Role.DUTY, None, Action.READ_DEAD_LETTERS),
    ):
        with pytest.raises(Forbidden):
            require(user(role, community), action)


def test_the_role_table_grants_no_role_above_ones_own() -> None:
    assert not allows(Role.ENGINEER, Action.COMMENT_ALERT)  # documented read-only for alerts
    for granter, role in itertools.product(Role, Role):
        assert may_grant(granter, role) == (ROLE_ACTIONS[role] <= ROLE_ACTIONS[granter])
    assert may_grant(Role.ADMIN, Role.ENGINEER) and not may_grant(Role.SUPERVISOR, Role.ADMIN)
    assert not may_grant(Role.ENGINEER, Role.DUTY)  # an engineer may not work alerts


def _permission(route: APIRoute) -> Action | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        action = getattr(dep.call, "action", None)
        if action is not None:
            return action
        stack.extend(dep.dependencies)
    return None


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(path, route) for every API route, through included routers: FastAPI 0.165 keeps an
    included router as one entry of ``app.routes`` (``_IncludedRouter``) instead of
    copying its routes in, so a plain walk of ``app.routes`` met none of them."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):  # FastAPI's _IncludedRouter
            inner = prefix + (route.include_context.prefix or "")
            yield from _api_routes(list(route.original_router.routes), inner)


def test_every_write_route_checks_the_role_table_and_every_id_route_is_in_cases() -> None:
    from sqlalchemy.orm import sessionmaker as _sm

    app = create_api(ApiState(settings=Settings(environment="test"), factory=_sm()))
    # not users' routes: the login itself, gateways' uploads (HTTP Basic, checked per
    # event), and residents' own appeals (a ticket and its key or phone, no login: their
    # refusals are tested in tests/cloud/appeals)
    not_users = {
        ("POST", "/api/auth/token"),
        ("PUT", "/api/evidence/{event_id}/{name}"),
        ("POST", "/api/appeals"),
        ("GET", "/api/appeals/{ticket}"),
        ("POST", "/api/appeals/{ticket}/rating"),
    }
    covered = {(c.method, c.route) for c in CASES}
    routes = list(_api_routes(list(app.routes)))
    # the walk sees every documented operation: it cannot pass by seeing nothing
    documented = {
        (method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
    }
    walked = {(method, path) for path, route in routes for method in route.methods or ()}
    assert documented <= walked, f"routes the walk missed: {sorted(documented - walked)}"
    for path, route in routes:
        for method in route.methods or ():
            if (method, path) in not_users:
                continue
            if method != "GET":
                assert _permission(route) is not None, f"{method} {path} checks no action"
            # models are the district's, in no place (the file route checks gateways
            # itself: tests/cloud/model_registry)
            placeless = (
                "/api/broker/{which}",
                "/api/models/{model_id}",
                "/api/models/{model_id}/file",
            )
            if "{" in path and path not in placeless:
                assert (method, path) in covered, f"{method} {path} is missing from CASES"
