"""Fixtures for appeals: a place of its own per test (ids never repeat: PostgreSQL's
database is shared by the session), with buildings of each kind, the site's departments,
a registered gateway for alerts through the real ingest, and small real images."""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud.appeals.config import AppealSettings
from cloud.db import models as m
from cloud.db import transaction
from cloud.site_sync import register_gateway
from microbrain.protocol import GatewayPath

# the console's served app and Debian's Chromium, for the residents' page test
from tests.cloud.console.conftest import browser, console  # noqa: F401
from tests.cloud.helpers import DEVICES

SECRET = "test-secret"
# a real 1×1 JPEG and PNG (what a phone's browser sends, only smaller)
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////"
    "////////////////////////////////wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAAA//EABQQAQAA"
    "AAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AN//Z"
)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True)
class Place:
    """A community and compound of its own: b1 (residential, with a leader; the
    gateway's building), b2 (residential, no leader), shop (commercial)."""

    community: str
    compound: str
    gw: GatewayPath

    def fields(self, **kw: Any) -> dict[str, Any]:
        return {"community": self.community, "compound": self.compound, **kw}


def make_place(factory: sessionmaker[Session], compound: str = "c1") -> Place:
    tag = uuid.uuid4().hex[:8]
    gw = GatewayPath(f"t-{tag}", compound, f"gw-{tag}")
    with transaction(factory) as s:
        register_gateway(s, gw.community, gw.compound, gw.gateway, building="b1", **DEVICES)
        b1 = s.query(m.Building).filter_by(community=gw.community, compound=compound, id="b1").one()
        b1.leader = {"name": "吴阿姨", "role": "楼栋长", "phone": "13900000013"}
        s.add(
            m.Building(
                community=gw.community,
                compound=compound,
                id="b2",
                name="2号楼",
                category="residential_multistorey",
            )
        )
        s.add(
            m.Building(
                community=gw.community,
                compound=compound,
                id="shop",
                name="商铺",
                category="commercial",
                leader={"name": "店长", "role": "楼栋长"},
            )
        )
        for dept, name in (
            ("fire", "消防救援站"),
            ("elevator", "电梯维保单位"),
            ("police", "派出所"),
        ):
            if s.get(m.Department, dept) is None:  # shared on PostgreSQL: never overwritten
                s.add(m.Department(id=dept, name=name, contacts=[]))
    return Place(gw.community, compound, gw)


@pytest.fixture
def place(factory: sessionmaker[Session]) -> Place:
    return make_place(factory)


@pytest.fixture
def settings(tmp_path: Any) -> AppealSettings:
    # roomy limit: PostgreSQL's database (and so each phone's counter) is shared by the session
    return AppealSettings(
        photo_dir=tmp_path / "photos", max_photo_bytes=64 * 1024, max_per_contact=10_000
    )


def unique_phone() -> str:
    """A mobile number no other test uses (the rate limit counts per phone)."""
    return f"138{random.randrange(10**8):08d}"


def t0() -> datetime:
    return datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
