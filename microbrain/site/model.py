"""The district as declared in YAML: communities → compounds → buildings, gateways,
cameras and sensors, who is responsible at each level, escalation and departments."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from microbrain.protocol.topics import GatewayPath
from microbrain.site.cameras import Camera, DetectorConfig
from microbrain.site.common import Contact, Duration, Id, Name, Strict
from microbrain.site.escalation import EscalationOverride, EscalationPolicy, merge_policy
from microbrain.site.sensors import Sensor, SensorProfile
from microbrain.site.standards import BuildingCategory


class Building(Strict):
    id: Id
    name: Name
    category: BuildingCategory = "residential_highrise"
    floors: int | None = Field(default=None, ge=1, le=200)
    leader: Contact | None = Field(default=None, description="楼栋长")


class Gateway(Strict):
    """The edge box of a compound, with the cameras and sensors wired to it."""

    id: Id
    name: Name | None = None
    building: Id | None = None
    password_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="environment variable holding its broker password (never the password)",
    )
    heartbeat_s: Duration = Field(
        default=30.0, ge=5, le=3_600, description="status heartbeat period"
    )
    detector: DetectorConfig = DetectorConfig()
    cameras: tuple[Camera, ...] = ()
    sensors: tuple[Sensor, ...] = ()


class Compound(Strict):
    """小区: buildings, the gateways in it, and who answers for it."""

    id: Id
    name: Name
    contacts: tuple[Contact, ...] = Field(default=(), description="党支部, 物业 …")
    escalation: EscalationOverride | None = Field(default=None, description="override the parent's")
    buildings: tuple[Building, ...] = Field(min_length=1)
    gateways: tuple[Gateway, ...] = ()


class Community(Strict):
    """社区: the duty desk's level."""

    id: Id
    name: Name
    contacts: tuple[Contact, ...] = Field(default=(), description="社区值班台 …")
    escalation: EscalationOverride | None = None
    compounds: tuple[Compound, ...] = Field(min_length=1)


class Department(Strict):
    """A functional department a work order is whistled to (吹哨报到)."""

    id: Id
    name: Name
    contacts: tuple[Contact, ...] = ()


class District(Strict):
    id: Id
    name: Name
    timezone: str = Field(
        default="Asia/Shanghai", description="local time for schedules and reports"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value


@dataclass(frozen=True, slots=True)
class GatewayPlace:
    """A gateway with the path to it; what `edge run` needs from the site."""

    community: Community
    compound: Compound
    gateway: Gateway

    @property
    def path(self) -> GatewayPath:
        return GatewayPath(self.community.id, self.compound.id, self.gateway.id)


class Site(Strict):
    """A whole site file. Load it with :func:`microbrain.site.load_site`."""

    schema_version: Literal[1] = Field(default=1, alias="schema")
    district: District
    escalation: EscalationPolicy = EscalationPolicy()
    departments: tuple[Department, ...] = ()
    sensor_profiles: tuple[SensorProfile, ...] = ()
    communities: tuple[Community, ...] = Field(min_length=1)

    def gateways(self) -> Iterator[GatewayPlace]:
        for community in self.communities:
            for compound in community.compounds:
                for gateway in compound.gateways:
                    yield GatewayPlace(community, compound, gateway)

    def gateway(self, gateway_id: str) -> GatewayPlace:
        for place in self.gateways():
            if place.gateway.id == gateway_id:
                return place
        known = ", ".join(p.gateway.id for p in self.gateways()) or "none"
        raise KeyError(f"no gateway {gateway_id!r} in the site (known: {known})")

    def escalation_for(
        self, community: Community, compound: Compound | None = None
    ) -> EscalationPolicy:
        """The policy in force at a community or compound, inherited down the tree."""
        policy = merge_policy(self.escalation, community.escalation)
        return merge_policy(policy, compound.escalation) if compound is not None else policy

    def profile(self, profile_id: str) -> SensorProfile:
        for profile in self.sensor_profiles:
            if profile.id == profile_id:
                return profile
        raise KeyError(f"no sensor profile {profile_id!r}")

    def buildings(self) -> Iterator[tuple[Community, Compound, Building]]:
        for community in self.communities:
            for compound in community.compounds:
                for building in compound.buildings:
                    yield community, compound, building
