"""The fusion rule file and the pure matching: the shipped file holds the issue's two
examples; a broken file is refused naming its line; place and window decide a match."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.fusion import FusionRulesError, Seen, first_rule, load_rules
from cloud.fusion.rules import FILE_ERRORS, FusionRule, FusionRules, gap_s, same_place
from microbrain.protocol import Severity

GOOD = """schema: 1
rules:
  - id: elevator
    a: [elevator_fault]
    b: [ebike_in_elevator]
    same: building
    within_s: 10m
    raise_to: critical
    reason: 同一楼栋电梯故障且有电动车进入电梯
"""
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fusion.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_file_holds_the_issues_two_examples() -> None:
    rules = load_rules()
    by_id = {r.id: r for r in rules.rules}
    hydrant, elevator = by_id["fire-lane-and-hydrant"], by_id["elevator-fault-with-ebike"]
    assert set(hydrant.a) == {"hydrant_pressure_low", "hydrant_pressure_drop"}
    assert hydrant.b == ("illegal_parking",) and hydrant.same == "compound"
    assert hydrant.within_s == 7200 and hydrant.raise_to == Severity.CRITICAL
    assert elevator.a == ("elevator_fault",) and elevator.b == ("ebike_in_elevator",)
    assert elevator.same == "building" and elevator.within_s == 600
    assert elevator.raise_to == Severity.CRITICAL
    assert all(r.reason for r in rules.rules)
    assert rules.lookback_s == 7200


def test_a_good_file_loads(tmp_path: Path) -> None:
    (rule,) = load_rules(_write(tmp_path, GOOD)).rules
    assert (rule.id, rule.within_s, rule.raise_to) == ("elevator", 600, Severity.CRITICAL)


@pytest.mark.parametrize(
    ("change", "line", "words"),
    [
        (("    same: building\n", "    same: building\n    colour: red\n"), 7, "colour"),
        (("raise_to: critical", "raise_to: urgent"), 8, "not a severity"),
        (("within_s: 10m", "within_s: 8d"), 7, "less than or equal"),
        (("within_s: 10m", "within_s: soon"), 7, "within_s"),
        (("same: building", "same: street"), 6, "same"),
        (("b: [ebike_in_elevator]", "b: []"), 5, "at least 1"),
        (("a: [elevator_fault]", "a: [Elevator Fault]"), 4, "a[0]"),
        (("reason: 同一楼栋电梯故障且有电动车进入电梯", "reason: '  '"), 9, "reason"),
        (("schema: 1", "schema: 2"), 1, "schema"),
        (("    reason:", "    reason: x\n    reason:"), 9, "line 10"),  # a key given twice
    ],
)
def test_a_broken_file_is_refused_naming_its_line(
    tmp_path: Path, change: tuple[str, str], line: int, words: str
) -> None:
    before = FILE_ERRORS._value.get()
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(FusionRulesError) as err:
        load_rules(_write(tmp_path, text))
    message = str(err.value)
    assert str(tmp_path / "fusion.yaml") in message
    assert f"line {line}" in message, message
    assert words in message, message
    assert FILE_ERRORS._value.get() == before + 1


def test_a_duplicate_rule_id_names_the_second_and_the_first(tmp_path: Path) -> None:
    rule = GOOD.split("rules:\n", 1)[1]
    with pytest.raises(FusionRulesError) as err:
        load_rules(_write(tmp_path, GOOD + rule))
    assert "line 10: rules[1].id: duplicate rule id 'elevator' (first at rules[0])" in str(
        err.value
    )


def test_a_missing_file_and_one_that_is_not_yaml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FusionRulesError, match="no such file"):
        load_rules(tmp_path / "absent.yaml")
    with pytest.raises(FusionRulesError, match="line 3: not valid YAML"):
        load_rules(_write(tmp_path, "schema: 1\nrules: [\n  - {id: x\n"))


def _seen(
    n: int, kind: str, *, building: str | None = "b1", zone: str | None = None,
    compound: str = "c1", start: int = 0, end: int | None = None,
) -> Seen:  # fmt: skip
    return Seen(
        n,
        kind,
        "k1",
        compound,
        building,
        zone,
        T0 + timedelta(seconds=start),
        T0 + timedelta(seconds=start if end is None else end),
    )


@pytest.mark.parametrize(
    ("x", "y", "gap"),
    [
        (_seen(1, "a", start=0, end=100), _seen(2, "b", start=50, end=60), 0.0),  # inside
        (_seen(1, "a", start=0, end=100), _seen(2, "b", start=90, end=400), 0.0),  # overlap
        (_seen(1, "a", start=0, end=100), _seen(2, "b", start=160), 60.0),  # after
        (_seen(1, "a", start=500), _seen(2, "b", start=0, end=200), 300.0),  # before
    ],
)
def test_the_gap_is_between_the_spans_of_time(x: Seen, y: Seen, gap: float) -> None:
    assert gap_s(x, y) == gap == gap_s(y, x)


@pytest.mark.parametrize(
    ("place", "y", "shared"),
    [
        ("compound", _seen(2, "b", building="b2"), True),
        ("compound", _seen(2, "b", compound="c2"), False),
        ("building", _seen(2, "b", building="b1"), True),
        ("building", _seen(2, "b", building="b2"), False),
        ("building", _seen(2, "b", building=None), False),
        ("zone", _seen(2, "b", zone="z1"), True),
        ("zone", _seen(2, "b", zone="z2"), False),
        ("zone", _seen(2, "b", building="b2", zone="z1"), False),
    ],
)
def test_the_place_a_rule_names_must_be_shared(place: str, y: Seen, shared: bool) -> None:
    x = _seen(1, "a", zone="z1")
    assert same_place(place, x, y) is shared  # type: ignore[arg-type]
    assert same_place(place, y, x) is shared  # type: ignore[arg-type]


def test_the_first_matching_rule_wins_and_either_order_matches() -> None:
    wide = FusionRule(
        id="wide", a=("a",), b=("b", "c"), same="compound", within_s=3600, reason="宽"
    )
    narrow = FusionRule(id="narrow", a=("a",), b=("b",), same="building", within_s=60, reason="窄")
    x, y = _seen(1, "a"), _seen(2, "b", start=30)
    assert first_rule(FusionRules([narrow, wide]), x, y) is narrow
    assert first_rule(FusionRules([narrow, wide]), y, x) is narrow
    assert first_rule(FusionRules([wide, narrow]), x, y) is wide
    far = _seen(2, "b", start=61)
    assert first_rule(FusionRules([narrow]), x, far) is None
    assert first_rule(FusionRules([narrow]), x, _seen(1, "b")) is None  # the alert itself
    assert first_rule(FusionRules([narrow]), _seen(1, "b"), _seen(2, "b")) is None


def test_rules_made_in_code_are_checked_too() -> None:
    rule = FusionRule(id="x", a=("a",), b=("b",), same="zone", within_s=5, reason="x")
    with pytest.raises(ValueError, match="duplicate rule id 'x'"):
        FusionRules([rule, rule])
