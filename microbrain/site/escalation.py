"""Escalation deadlines: how long each level has to acknowledge, by severity."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from microbrain.protocol.payloads import Severity
from microbrain.site.common import Duration, Id, Strict

LEVELS = ("building", "compound", "community")


class LevelDeadlines(Strict):
    critical: Duration = Field(
        default=300.0, ge=10, le=7 * 86_400, description="to acknowledge a critical alert"
    )
    warning: Duration = Field(
        default=1800.0, ge=10, le=7 * 86_400, description="to acknowledge a warning"
    )
    info: Duration = Field(
        default=4 * 3600.0, ge=10, le=7 * 86_400, description="to acknowledge an info alert"
    )

    def for_severity(self, severity: Severity) -> float:
        return {
            Severity.CRITICAL: self.critical,
            Severity.WARNING: self.warning,
            Severity.INFO: self.info,
        }[Severity(severity)]


class EscalationPolicy(Strict):
    """Building → compound → community, then 吹哨: a work order to a department."""

    building: LevelDeadlines = LevelDeadlines()
    compound: LevelDeadlines = LevelDeadlines(critical=600, warning=3600, info=8 * 3600)
    community: LevelDeadlines = LevelDeadlines(critical=900, warning=7200, info=24 * 3600)
    whistle: dict[Id, Id] = Field(
        default_factory=dict, description="event kind → department that a work order goes to"
    )

    def deadline(self, level: str, severity: Severity) -> float:
        deadlines: LevelDeadlines = getattr(self, level)
        return deadlines.for_severity(severity)


class LevelOverride(Strict):
    """Some of a level's deadlines; the rest are inherited from the level above."""

    critical: Duration | None = Field(
        default=None, ge=10, le=7 * 86_400, description="to acknowledge a critical alert"
    )
    warning: Duration | None = Field(
        default=None, ge=10, le=7 * 86_400, description="to acknowledge a warning"
    )
    info: Duration | None = Field(
        default=None, ge=10, le=7 * 86_400, description="to acknowledge an info alert"
    )


class EscalationOverride(Strict):
    """A community's or compound's changes to the policy it inherits."""

    building: LevelOverride | None = None
    compound: LevelOverride | None = None
    community: LevelOverride | None = None
    whistle: dict[Id, Id] | None = Field(default=None, description="merged into the parent's")


def merge_policy(
    base: EscalationPolicy, override: EscalationOverride | dict[str, Any] | None
) -> EscalationPolicy:
    """Inherit down the tree: the override's keys replace the base's, level by level."""
    if isinstance(override, EscalationOverride):
        override = override.model_dump(exclude_none=True)
    if not override:
        return base
    data = base.model_dump()
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return EscalationPolicy.model_validate(data)
