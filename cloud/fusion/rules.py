"""Fusion rules (``configs/fusion.yaml``): which alerts are related in place and time.

A rule names two sets of alert kinds (``a`` and ``b``), the place two alerts must share
(``compound``, ``building`` or ``zone``), how close in time they must be (``within_s``:
the gap between the two alerts' spans of edge time, first to latest event; 0 when they
overlap), an optional severity to raise both to (``raise_to``, never lowering), and the
reason in Chinese that both alerts' logs and pages show.

The matching is pure (:func:`first_rule` over :class:`Seen`, no database): the service
(:mod:`cloud.fusion.service`) feeds it live alerts. Read strictly through
:mod:`microbrain.config_files`: an unknown key, a duplicate id, a kind that is not an id,
a window out of bounds — each is an error naming the file, its line and its path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from prometheus_client import Counter
from pydantic import Field, StringConstraints

from microbrain.config_files import ConfigFileError, Problem, duplicate_ids, read_yaml
from microbrain.protocol import SeverityName
from microbrain.site.common import Duration, Id, Strict

# the file the repository ships (the defaults); a deployment names its own
SHIPPED_RULES = Path(__file__).resolve().parents[2] / "configs" / "fusion.yaml"
MAX_WINDOW_S = 7 * 86_400  # a week: beyond that two alerts are history, not one situation

FILE_ERRORS = Counter(
    "mb_fusion_rule_file_errors_total", "fusion rule files refused (each problem is logged)"
)


class FusionRulesError(ConfigFileError):
    """A fusion rule file that cannot be used; ``problems`` lists each one with its line."""


Place = Literal["compound", "building", "zone"]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class FusionRule(Strict):
    """Link an alert of a kind in ``a`` with one of a kind in ``b`` at the same place
    (``same``) seen within ``within_s`` of each other; raise both to ``raise_to``."""

    id: Id
    a: tuple[Id, ...] = Field(min_length=1, max_length=50, description="alert kinds")
    b: tuple[Id, ...] = Field(min_length=1, max_length=50, description="alert kinds")
    same: Place = Field(
        description="compound: the same compound; building: the same building (both "
        "alerts name one); zone: the same zone of the same building"
    )
    within_s: Duration = Field(
        ge=1,
        le=MAX_WINDOW_S,
        description="seconds (or '10m', '2h') between the two alerts' spans of edge time",
    )
    raise_to: SeverityName | None = Field(
        default=None, description="raise both alerts to this severity (never lowers)"
    )
    reason: Reason = Field(description="why they belong together, in Chinese, on both alerts")

    def pairs(self, x: str, y: str) -> bool:
        """Whether kinds ``x`` and ``y`` (in either order) are this rule's two sides."""
        return (x in self.a and y in self.b) or (y in self.a and x in self.b)


class FusionFile(Strict):
    schema_: Literal[1] = Field(alias="schema")
    rules: tuple[FusionRule, ...] = ()


class FusionRules:
    """A loaded, checked rule file; the rules in file order (the first match wins)."""

    def __init__(self, rules: Iterable[FusionRule] = ()) -> None:
        self.rules = tuple(rules)
        problems = list(verify_rules(self.rules))
        if problems:
            raise ValueError("; ".join(str(p) for p in problems))
        self.kinds = frozenset(k for r in self.rules for k in (*r.a, *r.b))

    @property
    def lookback_s(self) -> float:
        """The largest window: how far back a pass without a watermark looks."""
        return max((r.within_s for r in self.rules), default=0.0)

    def __len__(self) -> int:
        return len(self.rules)


@dataclass(frozen=True, slots=True)
class Seen:
    """What the matching needs of one live alert: its kind, place and span of edge time
    (first to latest event)."""

    id: int
    kind: str
    community: str
    compound: str
    building: str | None
    zone: str | None
    first: datetime
    last: datetime


def gap_s(x: Seen, y: Seen) -> float:
    """Seconds between the two spans of time; 0 when they overlap.

    >>> from datetime import UTC
    >>> t = lambda m: datetime(2026, 12, 7, 8, m, tzinfo=UTC)
    >>> x = Seen(1, "elevator_fault", "k", "c", "b1", None, t(0), t(5))
    >>> gap_s(x, Seen(2, "ebike_in_elevator", "k", "c", "b1", None, t(12), t(12)))
    420.0
    """
    later_start = max(x.first, y.first)
    earlier_end = min(x.last, y.last)
    return max(0.0, (later_start - earlier_end).total_seconds())


def same_place(place: Place, x: Seen, y: Seen) -> bool:
    """Whether ``x`` and ``y`` share ``place``: a building or zone both must name (an
    alert without a building shares none with another)."""
    if (x.community, x.compound) != (y.community, y.compound):
        return False
    if place == "compound":
        return True
    if x.building is None or x.building != y.building:
        return False
    return place == "building" or (x.zone is not None and x.zone == y.zone)


def matches(rule: FusionRule, x: Seen, y: Seen) -> bool:
    """Whether ``rule`` links ``x`` and ``y``: its two sides, its place, its window."""
    return (
        x.id != y.id
        and rule.pairs(x.kind, y.kind)
        and same_place(rule.same, x, y)
        and gap_s(x, y) <= rule.within_s
    )


def first_rule(rules: FusionRules, x: Seen, y: Seen) -> FusionRule | None:
    """The first rule (in file order) that links ``x`` and ``y``, or None."""
    return next((r for r in rules.rules if matches(r, x, y)), None)


def verify_rules(rules: Iterable[FusionRule]) -> Iterator[Problem]:
    """Cross-checks after validation: ids are unique."""
    yield from duplicate_ids(((f"rules[{i}]", r.id) for i, r in enumerate(rules)), "rule")


def load_rules(path: str | Path = SHIPPED_RULES) -> FusionRules:
    """Read, validate and cross-check a fusion rule file; raise :class:`FusionRulesError`
    naming each problem's line and path.

    >>> rules = load_rules("configs/fusion.yaml")  # doctest: +SKIP
    """
    try:
        doc = read_yaml(path, error=FusionRulesError)
        book = doc.validate(FusionFile, error=FusionRulesError)
        problems = list(verify_rules(book.rules))
        if problems:
            raise FusionRulesError(doc.source, doc.located(problems))
    except FusionRulesError:
        FILE_ERRORS.inc()
        raise
    return FusionRules(book.rules)


__all__ = [
    "SHIPPED_RULES",
    "FusionFile",
    "FusionRule",
    "FusionRules",
    "FusionRulesError",
    "Seen",
    "first_rule",
    "gap_s",
    "load_rules",
    "matches",
    "same_place",
]
