"""The liveness sweep over a real database (SQLite and PostgreSQL), a clock stepped by
hand. Heartbeats, last wills and health reports go through the real ingest path
(``tests.cloud.helpers.ingest``), as a gateway's status messages would.

Each test's clock starts 30 days after the previous test's: on PostgreSQL the session's
tests share one database, every sweep covers every gateway in it, and the sweep row
remembers the latest moment swept (see ``liveness_sweep._claim``).
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud import auth
from cloud.alerts import AlertFilter, list_alerts
from cloud.api import create_api
from cloud.api.deps import ApiState
from cloud.awareness.liveness_policy import (
    DEFAULT_POLICY,
    LivenessPolicy,
    LivenessPolicyError,
    load_policy,
)
from cloud.awareness.liveness_state import Change, Timing, Track, advance
from cloud.awareness.liveness_sweep import (
    DEVICE_FLAPPING,
    GATEWAY_OFFLINE,
    REFUSED,
    SweepReport,
    run,
    troubled,
)
from cloud.clock import ManualClock
from cloud.console import mount_console
from cloud.db import make_engine, session_factory, transaction
from cloud.db import models as m
from cloud.settings import Settings
from cloud.site_sync import register_gateway
from microbrain.protocol import EventState, GatewayPath, GatewayState, Health, Status
from tests.cloud.helpers import event, ingest, unique_gateway

HEARTBEAT_S = 30.0
STEP = timedelta(seconds=30)  # the sweep's interval in these tests: the gateway's heartbeat
CAMERAS = ("cam-0", "cam-1")
SENSORS = ("h1",)
_starts = itertools.count()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=30 * next(_starts)))


@pytest.fixture
def net(factory: sessionmaker[Session]) -> GatewayPath:
    """A gateway of this test's own community with two cameras and a sensor."""
    path = unique_gateway()
    with transaction(factory) as s:
        register_gateway(
            s,
            path.community,
            path.compound,
            path.gateway,
            building="b1",
            cameras=CAMERAS,
            sensors=SENSORS,
        )
    return path


def beat(
    factory: sessionmaker[Session],
    gw: GatewayPath,
    now: datetime,
    *,
    state: GatewayState = GatewayState.ONLINE,
    cameras_off: tuple[str, ...] = (),
) -> None:
    """A heartbeat (or the last will, ``state=offline``) through the ingest."""
    health = Health(
        cpu_percent=10,
        memory_mb=100,
        disk_free_mb=1000,
        cameras={c: ("offline" if c in cameras_off else "online") for c in CAMERAS},
    )
    result = ingest(factory, gw, [Status(ts=now, state=state, health=health)], now=now)
    assert result.rejected == 0 and result.applied == 1, result


def alerts(factory: sessionmaker[Session], gw: GatewayPath, kind: str) -> list[m.Alert]:
    with factory() as s:
        return list(
            s.scalars(
                select(m.Alert)
                .where(m.Alert.gateway == gw.gateway, m.Alert.kind == kind)
                .order_by(m.Alert.id)
            )
        )


def mine(report: SweepReport, gw: GatewayPath) -> list[tuple[str, str, Change]]:
    return [(ty, dev, ch) for g, ty, dev, ch in report.changes if g == gw.gateway]


def live(
    factory: sessionmaker[Session],
    clock: ManualClock,
    gw: GatewayPath,
    until: datetime,
    **beat_kw: object,
) -> list[SweepReport]:
    """Heartbeat and sweep every STEP until ``until``."""
    reports = []
    while clock() < until:
        clock.advance(seconds=STEP.total_seconds())
        beat(factory, gw, clock(), **beat_kw)  # type: ignore[arg-type]
        reports.append(run(factory, clock()))
    return reports


def silent(
    factory: sessionmaker[Session], clock: ManualClock, until: datetime
) -> list[SweepReport]:
    """Sweep every STEP until ``until`` while the gateway says nothing."""
    reports = []
    while clock() < until:
        clock.advance(seconds=STEP.total_seconds())
        reports.append(run(factory, clock()))
    return reports


# --- the pure core ------------------------------------------------------------------


T0 = datetime(2026, 6, 1, tzinfo=UTC)
TIMING = Timing(offline_after_s=60, online_after_s=60)


def walk(observations: list[tuple[int, str]], policy: LivenessPolicy = DEFAULT_POLICY) -> Track:
    """Advance a track through (seconds after T0, observed) in order."""
    first_s, first = observations[0]
    t = Track.first(first, T0 + timedelta(seconds=first_s), T0 + timedelta(seconds=first_s))
    for s, seen in observations[1:]:
        advance(t, seen, T0 + timedelta(seconds=s), TIMING, policy)
    return t


@pytest.mark.parametrize(
    ("observations", "state"),
    [
        ([(0, "up")], "online"),
        ([(0, "down")], "unknown"),  # first seen down: unknown until the debounce says
        ([(0, "down"), (60, "down")], "offline"),
        ([(0, "up"), (30, "down"), (60, "down")], "online"),  # down 30 s < 60 s
        ([(0, "up"), (30, "down"), (90, "down")], "offline"),
        ([(0, "up"), (30, "down"), (90, "down"), (120, "up")], "offline"),  # up 0 s
        ([(0, "up"), (30, "down"), (90, "down"), (120, "up"), (180, "up")], "online"),
        ([(0, "up"), (30, "unknown"), (600, "unknown")], "online"),  # nothing to say
    ],
)
def test_debounce_table(observations: list[tuple[int, str]], state: str) -> None:
    assert walk(observations).state == state


def test_flapping_counts_raw_episodes_and_ends_when_stable() -> None:
    obs = [(0, "up")]
    for i in range(20):  # 20 drops of 30 s, every 3 minutes
        obs += [(180 * i + 150, "down"), (180 * i + 180, "up")]
    t = walk(obs)
    assert t.flapping and t.flap_count == 20 and len(t.downs) == 20
    assert t.state == "online"  # no drop lasted the debounce
    changes = advance(t, "up", T0 + timedelta(seconds=3600 + 1799), TIMING, DEFAULT_POLICY)
    assert t.flapping and not changes
    changes = advance(t, "up", T0 + timedelta(seconds=3600 + 1800), TIMING, DEFAULT_POLICY)
    assert changes == [Change.FLAPPING_ENDED]
    assert (t.flapping, t.flap_count, t.downs) == (False, 0, [])


def test_episodes_outside_the_window_do_not_make_a_flap() -> None:
    obs = [(0, "up")]
    for i in range(10):  # one drop every 15 minutes: 4 an hour, under the threshold of 5
        obs += [(900 * i + 100, "down"), (900 * i + 130, "up")]
    t = walk(obs)
    assert not t.flapping and len(t.downs) == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"flap_threshold": 1},
        {"flap_window_s": 10},
        {"offline_after_heartbeats": -1},
        {"offline_after_heartbeats": float("nan")},
        {"unknown": 1},
    ],
)
def test_a_bad_policy_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LivenessPolicy.model_validate(bad)


def test_a_policy_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "liveness.yaml"
    path.write_text("flap_threshold: 8\nflap_window_s: 1800\n")
    assert load_policy(path) == LivenessPolicy(flap_threshold=8, flap_window_s=1800)
    path.write_text("flap_threshold: 8\nflap_windw_s: 1800\n")
    with pytest.raises(LivenessPolicyError) as err:
        load_policy(path)
    assert "liveness.yaml" in str(err.value) and "line 2: flap_windw_s" in str(err.value)


# --- the sweep over the database ------------------------------------------------------


def test_a_blip_shorter_than_the_debounce_raises_nothing(
    factory: sessionmaker[Session], net: GatewayPath, clock: ManualClock
) -> None:
    live(factory, clock, net, clock() + timedelta(minutes=5))
    # silent for 2 min: the liveness rule says down after 90 s, the debounce needs 60 s more
    reports = silent(factory, clock, clock() + timedelta(minutes=2))
    assert any(("gateway", net.gateway, Change.DOWN) in mine(r, net) for r in reports)
    reports += live(factory, clock, net, clock() + timedelta(minutes=2))
    # a last will, and back 30 s later
    clock.advance(seconds=10)
    beat(factory, net, clock(), state=GatewayState.OFFLINE)
    reports += [run(factory, clock())]
    reports += live(factory, clock, net, clock() + timedelta(minutes=5))
    assert alerts(factory, net, GATEWAY_OFFLINE) == []
    assert not any(
        ch in (Change.WENT_OFFLINE, Change.CAME_ONLINE)
        for r in reports
        for _, _, ch in mine(r, net)
    )
    with factory() as s:
        (row,) = s.scalars(
            select(m.DeviceLiveness).where(
                m.DeviceLiveness.gateway == net.gateway, m.DeviceLiveness.type == "gateway"
            )
        )
    assert row.state == "online" and len(row.downs) == 2 and not row.flapping


def test_offline_then_online_raises_once_and_clears(
    factory: sessionmaker[Session], net: GatewayPath, clock: ManualClock
) -> None:
    live(factory, clock, net, clock() + timedelta(minutes=5))
    last_beat = clock()
    reports = silent(factory, clock, clock() + timedelta(minutes=10))
    raised_at = [r.at for r in reports if r.raised]
    # 3 heartbeats (90 s) for the rule, 2 more (60 s) for the debounce, at the sweep's step
    assert raised_at == [last_beat + timedelta(seconds=180)]
    end = reports[-1]
    assert end.counts["gateway"]["offline"] >= 1
    went_unknown = {(ty, dev) for ty, dev, ch in mine(raised_report(reports), net)}
    assert went_unknown >= {("camera", "cam-0"), ("camera", "cam-1"), ("sensor", "h1")}
    (alert,) = alerts(factory, net, GATEWAY_OFFLINE)
    assert alert.active and alert.count == 1 and alert.source == net.gateway
    assert alert.building == "b1" and alert.community == net.community
    msg = alert.message or ""
    assert msg.startswith("网关离线：") and "已 3 分钟无心跳" in msg
    assert "其下 3 台摄像头/传感器状态未知" in msg
    with factory() as s:
        states = dict(
            s.execute(
                select(m.DeviceLiveness.device, m.DeviceLiveness.state).where(
                    m.DeviceLiveness.gateway == net.gateway
                )
            ).all()
        )
        (raised,) = s.scalars(select(m.EventRow).where(m.EventRow.alert_id == alert.id))
    assert states == {
        net.gateway: "offline",
        "cam-0": "unknown",
        "cam-1": "unknown",
        "h1": "unknown",
    }
    assert raised.payload["detail"]["silent_s"] == 180.0
    assert raised.payload["detail"]["devices_unknown"] == 3
    # the edge cannot report its cameras and sensors: no alert for them from the cloud
    for kind in ("camera_offline", "sensor_offline", DEVICE_FLAPPING):
        assert alerts(factory, net, kind) == []

    back = live(factory, clock, net, clock() + timedelta(minutes=3))
    cleared_at = [r.at for r in back if r.cleared]
    assert cleared_at == [back[0].at + timedelta(seconds=60)]  # up for 2 heartbeats
    (alert,) = alerts(factory, net, GATEWAY_OFFLINE)
    assert not alert.active and alert.status == "resolved" and alert.cleared
    with factory() as s:
        note = s.scalar(
            select(m.AlertTransition.note).where(
                m.AlertTransition.alert_id == alert.id, m.AlertTransition.action == "auto_resolved"
            )
        )
    assert (note or "").startswith("网关恢复在线：") and "离线约" in (note or "")


def raised_report(reports: list[SweepReport]) -> SweepReport:
    return next(r for r in reports if r.raised)


def flap(
    factory: sessionmaker[Session],
    clock: ManualClock,
    gw: GatewayPath,
    times: int,
    *,
    down_steps: int,
    up_steps: int,
    camera: bool = False,
) -> list[SweepReport]:
    """``times`` drops of ``down_steps`` sweeps each, ``up_steps`` up in between: the
    gateway's last will (or, ``camera``, its health report naming cam-0 offline)."""
    reports = []
    for _ in range(times):
        for _ in range(down_steps):
            clock.advance(seconds=STEP.total_seconds())
            if camera:
                beat(factory, gw, clock(), cameras_off=("cam-0",))
            else:
                beat(factory, gw, clock(), state=GatewayState.OFFLINE)
            reports.append(run(factory, clock()))
        reports += live(factory, clock, gw, clock() + STEP * up_steps)
    return reports


def test_a_gateway_flapping_20_times_in_an_hour_yields_one_item(
    factory: sessionmaker[Session], net: GatewayPath, clock: ManualClock
) -> None:
    live(factory, clock, net, clock() + timedelta(minutes=3))
    start = clock()
    # 30 s down (a last will), 2.5 min up: 20 times in an hour
    reports = flap(factory, clock, net, 20, down_steps=1, up_steps=5)
    assert clock() - start == timedelta(hours=1)
    downs = [c for r in reports for c in mine(r, net) if c[2] == Change.DOWN]
    assert len(downs) == 20
    (item,) = alerts(factory, net, DEVICE_FLAPPING)
    assert item.active and item.count == 20 and item.source == net.gateway
    assert "设备频繁掉线" in (item.message or "") and "1 小时内 20 次" in (item.message or "")
    assert alerts(factory, net, GATEWAY_OFFLINE) == []  # no drop lasted the debounce
    # stable for 30 minutes: the item is cleared
    after = live(factory, clock, net, clock() + timedelta(minutes=31))
    assert sum(r.flapping_ended for r in after) >= 1
    (item,) = alerts(factory, net, DEVICE_FLAPPING)
    assert not item.active and item.cleared and item.count == 20


def test_long_drops_raise_offline_only_until_the_flapping_is_seen(
    factory: sessionmaker[Session], net: GatewayPath, clock: ManualClock
) -> None:
    live(factory, clock, net, clock() + timedelta(minutes=3))
    # 2 min down (past the 60 s debounce), 2 min up: 15 drops in an hour
    flap(factory, clock, net, 15, down_steps=4, up_steps=4)
    offline = alerts(factory, net, GATEWAY_OFFLINE)
    threshold = DEFAULT_POLICY.flap_threshold
    assert len(offline) == threshold - 1  # the drops before the 5th; none after
    assert all(not a.active for a in offline)
    (item,) = alerts(factory, net, DEVICE_FLAPPING)
    assert item.active and item.count == 15
    # it stays down for good: once stable 30 min the item ends and the offline alert comes
    silent(factory, clock, clock() + timedelta(minutes=32))
    (item,) = alerts(factory, net, DEVICE_FLAPPING)
    assert not item.active
    offline = alerts(factory, net, GATEWAY_OFFLINE)
    assert len(offline) == threshold and offline[-1].active


def test_a_camera_flapping_yields_one_item_and_no_cloud_offline_alerts(
    factory: sessionmaker[Session], net: GatewayPath, clock: ManualClock
) -> None:
    live(factory, clock, net, clock() + timedelta(minutes=3))
    flap(factory, clock, net, 20, down_steps=2, up_steps=4, camera=True)
    (item,) = alerts(factory, net, DEVICE_FLAPPING)
    assert item.source == "cam-0" and item.count == 20 and item.building == "b1"
    assert "摄像头 cam-0" in (item.message or "")
    assert alerts(factory, net, GATEWAY_OFFLINE) == []
    assert alerts(factory, net, "camera_offline") == []  # the edge's to raise, not ours


def test_two_processes_sweeping_the_same_moment_raise_once(
    cloud_url: str, net: GatewayPath, clock: ManualClock
) -> None:
    """Two engines (each its own connections, as two processes have), started together
    by a barrier at the moment the gateway's debounce runs out: one sweeps and raises,
    the other waits on the sweep row and leaves the moment to it; the next moment, in
    the other process, raises nothing more."""
    engines = [make_engine(cloud_url) for _ in range(2)]
    factories = [session_factory(e) for e in engines]
    try:
        live(factories[0], clock, net, clock() + timedelta(minutes=3))
        silent(factories[0], clock, clock() + timedelta(seconds=150))  # one step short
        clock.advance(seconds=30)
        gate = threading.Barrier(2)
        reports: list[SweepReport] = []

        def sweep(f: sessionmaker[Session]) -> None:
            gate.wait()
            reports.append(run(f, clock()))

        threads = [threading.Thread(target=sweep, args=(f,)) for f in factories]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert len(reports) == 2
        assert sorted(r.skipped for r in reports) == [False, True]
        assert sum(r.raised for r in reports) >= 1
        (alert,) = alerts(factories[0], net, GATEWAY_OFFLINE)
        assert alert.count == 1
        with factories[0]() as s:
            opened = s.scalars(
                select(m.AlertTransition.action).where(m.AlertTransition.alert_id == alert.id)
            ).all()
        assert list(opened).count("opened") == 1
        # the next moment, in the other process: nothing more
        clock.advance(seconds=30)
        later = run(factories[1], clock())
        assert not later.skipped and later.raised == 0
        assert len(alerts(factories[0], net, GATEWAY_OFFLINE)) == 1
    finally:
        for e in engines:
            e.dispose()


@pytest.fixture
def other(factory: sessionmaker[Session]) -> GatewayPath:
    """A gateway of another community."""
    path = unique_gateway()
    with transaction(factory) as s:
        register_gateway(s, path.community, path.compound, path.gateway, building="b1")
    return path


def users(factory: sessionmaker[Session], *paths: GatewayPath) -> Iterator[m.User]:
    with transaction(factory) as s:
        for p in paths:
            yield auth.create_user(
                s,
                f"u-{uuid.uuid4().hex[:8]}",
                "password-123",
                "duty",
                now=datetime.now(UTC),
                community=p.community,
                compound=p.compound,
            )


def test_scope_a_gateways_alert_is_seen_only_in_its_own_area(
    factory: sessionmaker[Session], net: GatewayPath, other: GatewayPath, clock: ManualClock
) -> None:
    live(factory, clock, net, clock() + timedelta(minutes=3))
    beat(factory, other, clock())
    silent(factory, clock, clock() + timedelta(minutes=5))  # both go silent
    mine_user, their_user = list(users(factory, net, other))
    flt = AlertFilter(kinds=(GATEWAY_OFFLINE,), limit=200)
    with factory() as s:
        _, seen = list_alerts(s, mine_user, flt)
        _, theirs = list_alerts(s, their_user, flt)
    assert [a.gateway for a in seen] == [net.gateway]
    assert [a.gateway for a in theirs] == [other.gateway]  # each their own, nothing else
    with factory() as s:
        mine_now = troubled(s, mine_user)
        theirs_now = troubled(s, their_user)
    assert {(x.type, x.device, x.state) for x in mine_now} == {
        ("gateway", net.gateway, "offline"),
        ("camera", "cam-0", "unknown"),
        ("camera", "cam-1", "unknown"),
        ("sensor", "h1", "unknown"),
    }
    assert mine_now[0].device == net.gateway  # offline before unknown
    assert {x.gateway for x in theirs_now} == {other.gateway}  # never another area's


def test_a_removed_device_loses_its_row(
    factory: sessionmaker[Session], net: GatewayPath, clock: ManualClock
) -> None:
    live(factory, clock, net, clock() + timedelta(minutes=1))
    with transaction(factory) as s:
        s.execute(delete(m.Device).where(m.Device.gateway == net.gateway, m.Device.id == "cam-1"))
    live(factory, clock, net, clock() + timedelta(minutes=1))
    with factory() as s:
        devices = set(
            s.scalars(
                select(m.DeviceLiveness.device).where(m.DeviceLiveness.gateway == net.gateway)
            )
        )
    assert devices == {net.gateway, "cam-0", "h1"}


def test_a_gateway_id_the_protocol_refuses_is_counted_not_alerted(
    factory: sessionmaker[Session], clock: ManualClock
) -> None:
    """A gateway row whose id no event may carry (upper case: registered by hand, not
    through a site file) goes offline: no alert can be made; it is counted and logged,
    and the sweep goes on."""
    tag = uuid.uuid4().hex[:8]
    bad = f"GW-{tag}"
    with transaction(factory) as s:
        register_gateway(s, f"t-{tag}", "compound-1", bad, building="b1")
        s.execute(
            update(m.Gateway)
            .where(m.Gateway.id == bad)
            .values(state="online", last_seen=clock(), health={})
        )
    before = REFUSED.labels(GATEWAY_OFFLINE)._value.get()
    reports = silent(factory, clock, clock() + timedelta(minutes=4))
    assert sum(r.refused for r in reports) == 1
    assert REFUSED.labels(GATEWAY_OFFLINE)._value.get() == before + 1
    with factory() as s:
        assert s.scalars(select(m.Alert).where(m.Alert.gateway == bad)).all() == []
        state = s.scalar(select(m.DeviceLiveness.state).where(m.DeviceLiveness.gateway == bad))
    assert state == "offline"


def test_a_flapping_cameras_edge_raises_fold_into_its_one_item(
    factory: sessionmaker[Session], net: GatewayPath, clock: ManualClock
) -> None:
    """The edge raises and clears ``camera_offline`` itself at each drop (each clear
    before the next raise: twenty alerts). Through the ingest, once the cloud sees the
    camera flapping, its raises count in the one item instead; when it settles offline
    the edge's alert is raised once, with the edge's key, and the edge's clear resolves
    it."""
    live(factory, clock, net, clock() + timedelta(minutes=3))
    seq = 0

    def edge(state: EventState) -> None:
        nonlocal seq
        seq += 1
        ev = event(seq, kind="camera_offline", source="cam-0", zone=None, state=state)
        ingest(factory, net, [ev.model_copy(update={"ts": clock()})], now=clock())

    for _ in range(20):  # a minute down, two up: the edge says so too
        for step in range(2):
            clock.advance(seconds=30)
            beat(factory, net, clock(), cameras_off=("cam-0",))
            if step == 0:
                edge(EventState.RAISED)
            run(factory, clock())
        edge(EventState.CLEARED)
        live(factory, clock, net, clock() + STEP * 4)
    edge_alerts = alerts(factory, net, "camera_offline")
    threshold = DEFAULT_POLICY.flap_threshold
    # the drops up to the one the sweep saw the flapping at (its raise came first): the
    # edge's own alerts, each cleared
    assert len(edge_alerts) == threshold and not any(a.active for a in edge_alerts)
    (item,) = alerts(factory, net, DEVICE_FLAPPING)
    assert item.active and item.count == 20
    with factory() as s:
        linked = s.scalars(
            select(m.EventRow.kind).where(
                m.EventRow.alert_id == item.id, m.EventRow.kind == "camera_offline"
            )
        ).all()
    assert len(linked) == 20 - threshold  # the absorbed raises, on the item's timeline
    # it now stays offline: after 30 quiet minutes the item ends and one edge alert stands
    clock.advance(seconds=30)
    dropped = clock()
    beat(factory, net, clock(), cameras_off=("cam-0",))
    edge(EventState.RAISED)  # absorbed: still flapping
    run(factory, clock())
    while clock() < dropped + timedelta(minutes=31):
        clock.advance(seconds=30)
        beat(factory, net, clock(), cameras_off=("cam-0",))
        run(factory, clock())
    (item,) = alerts(factory, net, DEVICE_FLAPPING)
    assert not item.active
    edge_alerts = alerts(factory, net, "camera_offline")
    assert len(edge_alerts) == threshold + 1 and edge_alerts[-1].active
    assert "频繁掉线平稳后仍离线" in (edge_alerts[-1].message or "")
    edge(EventState.CLEARED)  # the camera is back: the edge's clear resolves it
    assert not alerts(factory, net, "camera_offline")[-1].active


def _console_page(factory: sessionmaker[Session], clock: ManualClock, user: m.User) -> str:
    """``/health`` as ``user`` sees it in the console."""
    state = ApiState(settings=Settings(environment="test"), factory=factory, clock=clock)
    app = create_api(state)
    mount_console(app, state)
    with TestClient(app) as client:
        r = client.post(
            "/login",
            data={"username": user.username, "password": "password-123", "next": "/health"},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        page = client.get("/health")
        assert page.status_code == 200
        return page.text


def test_the_health_page_lists_what_the_sweep_found_wanting_in_ones_own_area(
    factory: sessionmaker[Session], net: GatewayPath, other: GatewayPath, clock: ManualClock
) -> None:
    live(factory, clock, net, clock() + timedelta(minutes=3))
    beat(factory, other, clock())
    flap(factory, clock, net, 6, down_steps=1, up_steps=5)  # flapping, not offline
    mine_user, their_user = list(users(factory, net, other))
    mine = _console_page(factory, clock, mine_user)
    row = f'id="troubled-{net.gateway}-gateway-{net.gateway}"'
    assert row in mine and "频繁掉线（6 次）" in mine
    theirs = _console_page(factory, clock, their_user)
    assert row not in theirs and net.gateway not in theirs  # never another area's
