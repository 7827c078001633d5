"""Which sensor values have a trend-to-threshold warning, and their limits.

Strict models with defaults that need no file: :data:`DEFAULT_RULES` watches hydrant
pressure. Any numeric sensor kind can have a rule by configuration: a YAML file
(``configs/warning.yaml``) read by :func:`load_rules` through the project's strict loader
(:mod:`microbrain.config_files`: an unknown key, a key given twice, a NaN or a bad value
is an error naming the file and line)::

    rules:
      - kind: hydrant_pressure
        field: pressure_mpa
        limit: 0.07
        unit: MPa
        direction: falling
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from microbrain.config_files import ConfigFileError, Problem, read_yaml
from microbrain.site.standards import HYDRANT_MIN_STATIC_MPA, HYDRANT_STANDARD

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,55}$")]

# GB 50974-2014 §5.2.2: 0.07 MPa at the least favourable point for residential buildings
# (high-rise and multi-storey alike), the limit the issue names; stricter categories
# (public class 1: 0.10, over 100 m: 0.15) set their own rule's limit.
HYDRANT_LIMIT_MPA = HYDRANT_MIN_STATIC_MPA["residential_highrise"]


class TrendRule(BaseModel):
    """Warn when ``field`` of readings of ``kind`` trends to ``limit`` within ``horizon_h``.

    ``direction`` is the way that is bad: ``falling`` (a pressure decaying to its
    minimum) or ``rising`` (a temperature climbing to its maximum).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Id = Field(description="sensor kind, e.g. hydrant_pressure")
    field: Id = Field(description="the value in the reading, e.g. pressure_mpa")
    limit: float
    unit: str = Field(default="", max_length=16, description="shown after the numbers")
    direction: Literal["falling", "rising"] = "falling"
    window_h: float = Field(default=72.0, gt=1, le=24 * 31, description="readings fitted")
    horizon_h: float = Field(default=72.0, gt=0, le=24 * 90, description="warn this far ahead")
    min_points: int = Field(default=24, ge=3, le=10_000, description="hourly points needed")
    confidence: float = Field(default=0.90, gt=0.5, lt=1.0, description="the slope's interval")
    source: str = Field(default="", max_length=100, description="where the limit comes from")
    clear_margin: float = Field(
        default=1.25,
        ge=1.0,
        le=4.0,
        description="a standing warning clears once the pessimistic crossing is this many "
        "horizons away (or never comes): a series hovering at the horizon does not flap",
    )

    @model_validator(mode="after")
    def _enough_window(self) -> TrendRule:
        if self.min_points > self.window_h + 1:
            raise ValueError(
                f"min_points {self.min_points} cannot be met by hourly points in "
                f"a window of {self.window_h:g} h"
            )
        return self

    @property
    def alert_kind(self) -> str:
        """The alert kind a warning of this rule opens: ``<kind>_trend``."""
        return f"{self.kind}_trend"


class TrendRulesFile(BaseModel):
    """The file's shape: the rules, checked one by one (:func:`verify_rules` checks
    them together, naming the line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[TrendRule, ...] = ()


def verify_rules(rules: tuple[TrendRule, ...]) -> Iterator[Problem]:
    """At most one rule per (kind, field): two would raise the same alert twice."""
    seen: dict[tuple[str, str], int] = {}
    for i, rule in enumerate(rules):
        key = (rule.kind, rule.field)
        if key in seen:
            yield Problem(
                f"rules[{i}].field",
                f"two rules for {rule.kind}.{rule.field} (first at rules[{seen[key]}]); "
                "keep one of them",
            )
        else:
            seen[key] = i


class TrendRules(TrendRulesFile):
    """The rules, at most one per (kind, field)."""

    @model_validator(mode="after")
    def _distinct(self) -> TrendRules:
        for problem in verify_rules(self.rules):
            raise ValueError(problem.message)
        return self


class TrendRulesError(ConfigFileError):
    """A warning-rules file that cannot be used (each problem with its line)."""


def load_rules(path: str | Path | None) -> TrendRules:
    """The rules in ``path`` (YAML, strict), or :data:`DEFAULT_RULES` when ``path`` is
    None; raise :class:`TrendRulesError` naming the file and each problem's line.

    >>> load_rules("configs/warning.yaml").rules[0].kind  # doctest: +SKIP
    'hydrant_pressure'
    """
    if path is None:
        return DEFAULT_RULES
    doc = read_yaml(path, error=TrendRulesError)
    parsed = doc.validate(TrendRulesFile, error=TrendRulesError)
    problems = list(verify_rules(parsed.rules))
    if problems:
        raise TrendRulesError(doc.source, doc.located(problems))
    return TrendRules(rules=parsed.rules)


HYDRANT_RULE = TrendRule(
    kind="hydrant_pressure",
    field="pressure_mpa",
    limit=HYDRANT_LIMIT_MPA,
    unit="MPa",
    direction="falling",
    source=HYDRANT_STANDARD,
)
DEFAULT_RULES = TrendRules(rules=(HYDRANT_RULE,))
