"""A seeded district for the analysis and assistant tests: one community of three
compounds (西苑小区, 东苑小区, 南苑花园) with named buildings, five weeks of alerts from a
seeded generator plus a few placed by hand, hydrant readings, and a second community
whose alerts must never be counted. The tests compute what they expect from
:data:`ALERTS` and :data:`READINGS` in Python, never from the analysis SQL."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import models as m
from cloud.db import transaction
from cloud.site_sync import register_gateway

TZ = ZoneInfo("Asia/Shanghai")
COMMUNITY_NAME = "城南社区"
COMPOUNDS = {"c-xy": "西苑小区", "c-dy": "东苑小区", "c-ny": "南苑花园"}
BUILDINGS = {
    "c-xy": {"b1": "1号楼", "b3": "3号楼"},
    "c-dy": {"b2": "2号楼", "b5": "5栋"},
    "c-ny": {"b8": "8号楼"},
}
KINDS = (
    "illegal_parking",
    "ebike_charging",
    "ebike_entering_building",
    "ebike_in_elevator",
    "unleashed_dog",
    "elevator_fault",
    "hydrant_pressure_low",
    "hydrant_pressure_drop",
    "hydrant_pressure_trend",
    "smoke_alarm",
    "water_level_high",
    "fire_door_open",
    "gateway_offline",
    "sensor_offline",
    "camera_offline",
)
# "now" of every test: Wednesday 11 March 2026, 10:00 local
NOW_LOCAL = datetime(2026, 3, 11, 10, 0, tzinfo=TZ)
NOW = NOW_LOCAL.astimezone(UTC)
FIRST_DAY = date(2026, 2, 1)


@dataclass(frozen=True)
class A:
    """One seeded alert."""

    local: datetime
    kind: str
    severity: int
    compound: str
    building: str | None
    level: str = "building"
    ack_s: float | None = None
    resolve_s: float | None = None
    active: bool = False


@dataclass(frozen=True)
class R:
    """One seeded hydrant reading."""

    local: datetime
    compound: str
    building: str
    pressure_mpa: float


def at(d: date, hh: int, mm: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=TZ)


def _generated() -> list[A]:
    rng = random.Random(20260311)
    out: list[A] = []
    span_min = int((NOW_LOCAL - at(FIRST_DAY, 0)).total_seconds() // 60)
    for _ in range(240):
        local = at(FIRST_DAY, 0) + timedelta(minutes=rng.randrange(span_min))
        compound = rng.choice(sorted(COMPOUNDS))
        building = rng.choice([*sorted(BUILDINGS[compound]), None])
        kind = rng.choice(KINDS)
        ack = rng.choice([None, rng.uniform(5, 3600)])
        resolve = rng.choice([None, rng.uniform(3600, 20000)])
        out.append(
            A(
                local,
                kind,
                rng.randint(1, 3),
                compound,
                building,
                "building" if building else "compound",
                ack,
                resolve,
            )
        )
    return out


ALERTS: list[A] = [
    *_generated(),
    # placed by hand: the night before now, the first instant of today, a week's edges
    A(at(date(2026, 3, 10), 23, 30), "ebike_charging", 2, "c-xy", "b3", ack_s=60),
    A(at(date(2026, 3, 11), 2, 15), "ebike_charging", 2, "c-dy", "b5"),
    A(at(date(2026, 3, 11), 0, 0), "illegal_parking", 3, "c-xy", None, "compound"),
    A(at(date(2026, 3, 9), 0, 0), "illegal_parking", 1, "c-xy", "b1"),
    A(at(date(2026, 3, 8), 23, 59), "illegal_parking", 1, "c-xy", "b1"),
    A(at(date(2026, 3, 5), 9, 0), "elevator_fault", 3, "c-dy", "b2", ack_s=30, resolve_s=900),
    A(at(date(2026, 3, 5), 12, 0), "elevator_fault", 3, "c-dy", "b2", ack_s=90),
    A(at(date(2026, 3, 10), 8, 0), "hydrant_pressure_trend", 2, "c-xy", "b3", active=True),
    A(at(date(2026, 3, 10), 14, 0), "gateway_junk", 1, "c-ny", None, "compound"),
    A(at(date(2026, 3, 9), 10, 0), "ebike_entering_building", 2, "c-dy", "b2"),
    A(at(date(2026, 3, 10), 16, 0), "water_level_high", 2, "c-xy", "b1"),
    A(at(date(2026, 3, 3), 8, 0), "elevator_fault", 3, "c-xy", "b3", ack_s=20, resolve_s=5000),
    A(at(date(2026, 3, 11), 7, 30), "smoke_alarm", 3, "c-ny", "b8"),
    A(at(date(2026, 3, 10), 1, 30), "unleashed_dog", 1, "c-xy", None, "compound"),
    # either side of 3月5日, neither on it
    A(at(date(2026, 3, 4), 23, 59), "sensor_offline", 1, "c-dy", "b2"),
    A(at(date(2026, 3, 6), 0, 0), "sensor_offline", 1, "c-dy", "b2"),
]
# 3号楼 of 西苑小区: pressure falling; 8号楼 of 南苑花园: steady
READINGS: list[R] = [
    *(
        R(NOW_LOCAL - timedelta(hours=h), "c-xy", "b3", round(0.30 - 0.002 * (48 - h), 3))
        for h in range(48, 0, -6)
    ),
    *(R(NOW_LOCAL - timedelta(hours=h), "c-ny", "b8", 0.35) for h in range(48, 0, -6)),
]
OTHER_ALERTS = [
    A(NOW_LOCAL - timedelta(hours=h), "illegal_parking", 3, "c-xy", "b1") for h in (1, 30, 100)
]


@dataclass
class District:
    factory: sessionmaker[Session]
    community: str
    other: str

    def user(self, compound: str | None = None, community: str | None = None) -> m.User:
        """A user (not stored) at the community, or at one of its compounds."""
        return m.User(
            username=f"u-{uuid.uuid4().hex[:8]}",
            role="duty",
            community=community or self.community,
            compound=compound,
            building=None,
        )


def _places(s: Session, community: str) -> None:
    for compound, name in COMPOUNDS.items():
        for building, bname in BUILDINGS[compound].items():
            register_gateway(
                s,
                community,
                compound,
                f"gw-{community}-{compound}-{building}",
                building=building,
                sensors=("h1",),
            )
            s.execute(
                update(m.Building)
                .where(
                    m.Building.community == community,
                    m.Building.compound == compound,
                    m.Building.id == building,
                )
                .values(name=bname)
            )
        s.execute(
            update(m.Compound)
            .where(m.Compound.community == community, m.Compound.id == compound)
            .values(name=name)
        )
    s.execute(update(m.Community).where(m.Community.id == community).values(name=COMMUNITY_NAME))


def _alerts(s: Session, community: str, seed: list[A]) -> None:
    for n, a in enumerate(seed):
        opened = a.local.astimezone(UTC)
        gateway = f"gw-{community}-{a.compound}-{a.building or next(iter(BUILDINGS[a.compound]))}"
        row = m.Alert(
            key=f"{community}:{n}:{uuid.uuid4().hex[:6]}",
            active=a.active,
            kind=a.kind,
            severity=a.severity,
            status="open" if a.active else "resolved",
            level=a.level,
            community=community,
            compound=a.compound,
            building=a.building,
            gateway=gateway,
            source="cam-0",
            first_ts=opened,
            last_ts=opened,
            opened_at=opened,
            updated_at=opened,
        )
        s.add(row)
        s.flush()
        log = [("commented", opened + timedelta(seconds=1))]
        if a.ack_s is not None:
            log.append(("acknowledged", opened + timedelta(seconds=a.ack_s)))
            log.append(("acknowledged", opened + timedelta(seconds=a.ack_s + 500)))  # not first
        if a.resolve_s is not None:
            log.append(("resolved", opened + timedelta(seconds=a.resolve_s)))
        for action, t in log:
            s.add(
                m.AlertTransition(
                    alert_id=row.id,
                    action=action,
                    from_status="open",
                    to_status="open",
                    actor="t",
                    at=t,
                )
            )


def _readings(s: Session, community: str) -> None:
    for r in READINGS:
        ts = r.local.astimezone(UTC)
        s.add(
            m.ReadingRow(
                id=str(uuid.uuid4()),
                gateway=f"gw-{community}-{r.compound}-{r.building}",
                seq=None,
                ts=ts,
                sensor="h1",
                kind="hydrant_pressure",
                community=community,
                compound=r.compound,
                building=r.building,
                values={"pressure_mpa": r.pressure_mpa},
                units={"pressure_mpa": "MPa"},
            )
        )


def seed_district(factory: sessionmaker[Session]) -> District:
    community, other = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    with transaction(factory) as s:
        for c in (community, other):
            _places(s, c)
        s.flush()
        _alerts(s, community, ALERTS)
        _alerts(s, other, OTHER_ALERTS)
        _readings(s, community)
        _readings(s, other)
    return District(factory, community, other)
