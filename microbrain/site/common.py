"""Building blocks shared by the site models: strict base, ids, durations, contacts."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from microbrain.protocol.topics import ID_PATTERN

Id = Annotated[
    str,
    StringConstraints(pattern=rf"^{ID_PATTERN}$"),
    Field(description="lower-case slug: letters, digits, '-', '_'"),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """Accept seconds as a number or a string such as ``"90s"``, ``"5m"``, ``"2h"``."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration (examples: 30, '30s', '5m', '2h')")
        return float(match.group(1)) * _UNIT_S[match.group(2)]
    return value


# A duration in seconds; YAML may write ``5m`` or ``300``. Bounds go in the field:
# ``dwell_s: Duration = Field(default=60.0, ge=1, le=3_600, description="…")``.
Duration = Annotated[float, BeforeValidator(parse_duration)]


class Strict(BaseModel):
    """Every config model: unknown keys are errors, so a typo fails at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Contact(Strict):
    """A person or desk to notify (楼栋长, 物业, 社区值班台 …)."""

    name: Name
    role: Name = Field(description="e.g. 楼栋长 building leader, 物业 property, 值班 duty desk")
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 -]{4,19}$")] | None = None
