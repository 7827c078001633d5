"""The awareness loop's file (``configs/awareness.yaml``): shift times, desks and the
daily report's hour, and the shift arithmetic on them (Asia/Shanghai).

A *desk* (值班台) is a name and a place — the district (no community), a community, or
one compound of it — whose handovers and daily reports are made for that place, scoped
exactly as a user bound to that node is scoped (:func:`cloud.auth.scope_clause`).

Read strictly through :mod:`microbrain.config_files` (unknown keys, duplicate desk ids,
a time that is not HH:MM: each an error naming the file, line and path). Without a file
the defaults hold: shifts at 08:00 and 20:00, the report at 07:00, one district desk.

>>> config = AwarenessConfig()
>>> shift_at(config, datetime(2026, 3, 11, 1, 0, tzinfo=UTC)).start.isoformat()
'2026-03-11T00:00:00+00:00'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, model_validator

from cloud.db import models as m
from microbrain.config_files import ConfigFileError, Problem, duplicate_ids, read_yaml
from microbrain.site import Site
from microbrain.site.common import Duration, Id, Name, Strict

# the file shipped in the checkout (like cloud.fusion.SHIPPED_RULES): not the working
# directory's, so a cloud started elsewhere reads the same desks
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "configs" / "awareness.yaml"
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class AwarenessConfigError(ConfigFileError):
    """An awareness file that cannot be used; ``problems`` names each line and path."""


def _clock_time(value: Any) -> Any:
    if isinstance(value, str):
        match = _HHMM.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not a time of day; write HH:MM, e.g. '08:00'")
        return time(int(match.group(1)), int(match.group(2)))
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 08:00 as sexagesimal 480
        return time(value // 60 % 24, value % 60)
    return value


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class Desk(Strict):
    """A duty desk: its handovers and reports cover its place and everything below."""

    id: Id = Field(description="stable key of the desk's rows, e.g. 'district' or 'xiyuan'")
    name: Name = Field(description="the desk's name for people, e.g. '西苑社区值班台'")
    community: Id | None = Field(None, description="None: the whole district")
    compound: Id | None = Field(None, description="a compound of ``community``")

    @model_validator(mode="after")
    def _compound_needs_community(self) -> Desk:
        if self.compound is not None and self.community is None:
            raise ValueError("a desk at a compound names its community too")
        return self

    @property
    def scope(self) -> m.User:
        """The desk's place as a user bound to it (not stored): what the scoped queries
        of the alerts, the report and the API take."""
        return m.User(community=self.community, compound=self.compound, building=None)


def _default_desks() -> tuple[Desk, ...]:
    return (Desk(id="district", name="区值班台"),)


class AwarenessConfig(Strict):
    """The whole file."""

    timezone: str = Field("Asia/Shanghai", description="the zone of the shift times and days")
    shifts: tuple[ClockTime, ...] = Field(
        (time(8), time(20)), min_length=1, max_length=24, description="each shift's start"
    )
    handover_late_limit: Duration = Field(
        7200.0,
        gt=0,
        le=86400,
        description="a handover not made this long after its shift began (the cloud was "
        "down) is skipped: a stale handover would mislead the next shift",
    )
    report_at: ClockTime = Field(time(7), description="when yesterday's daily report is made")
    list_limit: int = Field(
        200, ge=1, le=5000, description="alerts listed per list of a handover (counts are exact)"
    )
    desks: tuple[Desk, ...] = Field(default_factory=_default_desks, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> AwarenessConfig:
        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError):
            raise ValueError(f"timezone: {self.timezone!r} is not a known time zone") from None
        if len(set(self.shifts)) != len(self.shifts):
            raise ValueError("shifts: a shift time is listed twice")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def desk(self, desk_id: str) -> Desk | None:
        return next((d for d in self.desks if d.id == desk_id), None)


def verify_awareness(config: AwarenessConfig, site: Site | None = None) -> list[Problem]:
    """Cross-checks: unique desk ids; with ``site``, places the site has."""
    desks = ((f"desks[{i}]", d.id) for i, d in enumerate(config.desks))
    problems = list(duplicate_ids(desks, "desk"))
    if site is None:
        return problems
    communities = {c.id: {k.id for k in c.compounds} for c in site.communities}
    for i, d in enumerate(config.desks):
        if d.community is not None and d.community not in communities:
            problems.append(
                Problem(f"desks[{i}].community", f"the site has no community {d.community!r}")
            )
        elif d.compound is not None and d.compound not in communities[d.community or ""]:
            problems.append(
                Problem(
                    f"desks[{i}].compound",
                    f"community {d.community!r} has no compound {d.compound!r}",
                )
            )
    return problems


def load_awareness(path: str | Path | None = None, site: Site | None = None) -> AwarenessConfig:
    """Read the awareness file (defaults when ``path`` is None or, for the default path,
    absent); raise :class:`AwarenessConfigError` naming each problem's line and path."""
    if path is None:
        if not DEFAULT_PATH.is_file():
            return AwarenessConfig()
        path = DEFAULT_PATH
    doc = read_yaml(path, error=AwarenessConfigError)
    config = doc.validate(AwarenessConfig, error=AwarenessConfigError)
    problems = verify_awareness(config, site)
    if problems:
        raise AwarenessConfigError(doc.source, doc.located(problems))
    return config


# --- shift arithmetic ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shift:
    """One shift: it began at ``start`` (UTC); the one before it began at ``previous``."""

    start: datetime
    previous: datetime


def _starts_around(config: AwarenessConfig, local_day: date) -> list[datetime]:
    tz = config.tz
    return sorted(
        datetime.combine(local_day + timedelta(days=d), t, tzinfo=tz).astimezone(UTC)
        for d in (-2, -1, 0, 1)
        for t in config.shifts
    )


def shift_at(config: AwarenessConfig, now: datetime) -> Shift:
    """The shift under way at ``now`` (aware): the latest shift start at or before it."""
    starts = _starts_around(config, now.astimezone(config.tz).date())
    i = max(i for i, s in enumerate(starts) if s <= now)
    return Shift(starts[i], starts[i - 1])


def report_due(config: AwarenessConfig, now: datetime) -> date | None:
    """The day whose report is due at ``now``: yesterday (local), once the report hour of
    today has come; None before it."""
    local = now.astimezone(config.tz)
    if local.time() < config.report_at:
        return None
    return local.date() - timedelta(days=1)
