"""Fusion fixtures: a compound with two gateways' worth of places, alerts made through the
real ingest at times an injected clock gives, and the rules the repository ships."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.clock import ManualClock
from cloud.db import models as m
from cloud.db import transaction
from cloud.fusion import FusionRules, load_rules
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath, Severity
from tests.cloud.helpers import DEVICES, event, ingest

HYDRANT = "fire-lane-and-hydrant"
ELEVATOR = "elevator-fault-with-ebike"
BUILDINGS = ("b1", "b2", "b3", "b4", "b5")


@dataclass
class Place:
    """A compound of its own (a unique community) with a gateway, and a second compound
    of the same community with another; alerts are made here at the clock's time."""

    factory: sessionmaker[Session]
    clock: ManualClock
    here: GatewayPath
    next_door: GatewayPath  # the same community, another compound
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def alert(
        self,
        kind: str,
        *,
        building: str = "b1",
        source: str = "cam-1",
        zone: str | None = None,
        severity: Severity = Severity.WARNING,
        where: GatewayPath | None = None,
    ) -> int:
        """An alert opened now through the real ingest (event time = the clock's)."""
        n = next(self.seq)
        ev = event(
            n,
            kind=kind,
            building=building,
            source=source,
            zone=zone or f"z{n}",
            severity=severity,
            ts=self.clock(),
        )
        result = ingest(self.factory, where or self.here, [ev], now=self.clock())
        (alert_id,) = result.alerts
        return int(alert_id)

    def get(self, alert_id: int) -> m.Alert:
        with self.factory() as s:
            return s.get_one(m.Alert, alert_id)

    def links(self, *alert_ids: int) -> list[m.AlertLink]:
        with self.factory() as s:
            return list(
                s.scalars(
                    select(m.AlertLink)
                    .where(
                        or_(
                            m.AlertLink.alert_lo.in_(alert_ids),
                            m.AlertLink.alert_hi.in_(alert_ids),
                        )
                    )
                    .order_by(m.AlertLink.id)
                )
            )

    def log(self, alert_id: int, *actions: str) -> list[m.AlertTransition]:
        with self.factory() as s:
            stmt = select(m.AlertTransition).where(m.AlertTransition.alert_id == alert_id)
            if actions:
                stmt = stmt.where(m.AlertTransition.action.in_(actions))
            return list(s.scalars(stmt.order_by(m.AlertTransition.id)))


def far_future() -> datetime:
    """A start time of this test's own: the PostgreSQL database is shared by the whole
    session, and a pass looks at every alert touched in its window; other tests' alerts
    (at the wall clock's time) stay out of it, and so do this file's other tests."""
    return datetime(2041, 1, 1, tzinfo=UTC) + timedelta(hours=uuid.uuid4().int % 200_000)


@pytest.fixture
def place(factory: sessionmaker[Session]) -> Place:
    tag = uuid.uuid4().hex[:8]
    here = GatewayPath(f"f-{tag}", "compound-1", f"gw-{tag}-1")
    next_door = GatewayPath(here.community, "compound-2", f"gw-{tag}-2")
    with transaction(factory) as s:
        for p in (here, next_door):
            register_gateway(s, p.community, p.compound, p.gateway, building="b1", **DEVICES)
            for b in BUILDINGS[1:]:
                s.add(
                    m.Building(
                        community=p.community,
                        compound=p.compound,
                        id=b,
                        name=b,
                        category="residential_highrise",
                    )
                )
    return Place(factory, ManualClock(far_future()), here, next_door)


@pytest.fixture(scope="session")
def rules() -> FusionRules:
    return load_rules()  # configs/fusion.yaml, as shipped
