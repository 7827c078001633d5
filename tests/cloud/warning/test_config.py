"""The warning rules' file: the shipped one is the defaults, a broken one names its lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.warning import DEFAULT_RULES, HYDRANT_RULE, TrendRulesError, load_rules
from cloud.warning.config import TrendRule, TrendRules

ROOT = Path(__file__).resolve().parents[3]


def test_the_shipped_file_is_the_defaults_and_no_file_means_the_defaults() -> None:
    assert load_rules(ROOT / "configs" / "warning.yaml") == DEFAULT_RULES
    assert load_rules(None) is DEFAULT_RULES
    assert DEFAULT_RULES.rules == (HYDRANT_RULE,) and HYDRANT_RULE.clear_margin == 1.25


def test_any_numeric_kind_by_configuration(tmp_path: Path) -> None:
    path = tmp_path / "warning.yaml"
    path.write_text(
        "rules:\n"
        "  - {kind: hydrant_pressure, field: pressure_mpa, limit: 0.07, unit: MPa}\n"
        "  - kind: water_tank\n"
        "    field: level_m\n"
        "    limit: 1.2\n"
        "    direction: falling\n"
        "    horizon_h: 48\n"
        "  - {kind: transformer, field: oil_temp_c, limit: 85, direction: rising}\n",
        encoding="utf-8",
    )
    rules = load_rules(path)
    assert [(r.kind, r.field, r.alert_kind) for r in rules.rules] == [
        ("hydrant_pressure", "pressure_mpa", "hydrant_pressure_trend"),
        ("water_tank", "level_m", "water_tank_trend"),
        ("transformer", "oil_temp_c", "transformer_trend"),
    ]
    assert rules.rules[2].direction == "rising" and rules.rules[1].horizon_h == 48


def test_a_broken_file_names_each_problem_by_line(tmp_path: Path) -> None:
    path = tmp_path / "warning.yaml"
    path.write_text(
        "rules:\n"
        "  - kind: hydrant_pressure\n"  # line 2
        "    field: pressure_mpa\n"
        "    limit: 0.07\n"
        "    horizon: 72\n"  # line 5: not a key (horizon_h)
        "  - kind: water_tank\n"  # line 6
        "    field: level_m\n"
        "    limit: 1.2\n"
        "    direction: down\n"  # line 9: not falling/rising
        "    clear_margin: 0.5\n",  # line 10: below 1
        encoding="utf-8",
    )
    with pytest.raises(TrendRulesError) as err:
        load_rules(path)
    text = str(err.value)
    assert str(path) in text and "3 problem(s)" in text
    assert "line 5: rules[0].horizon" in text and "Extra inputs" in text
    assert "line 9: rules[1].direction" in text
    assert "line 10: rules[1].clear_margin" in text


def test_two_rules_for_one_value_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "warning.yaml"
    path.write_text(
        "rules:\n"
        "  - {kind: water_tank, field: level_m, limit: 1.2}\n"
        "  - {kind: water_tank, field: level_m, limit: 1.0}\n"  # line 3
        "  - {kind: water_tank, field: temp_c, limit: .nan}\n",  # line 4
        encoding="utf-8",
    )
    with pytest.raises(TrendRulesError, match=r"line 4: rules\[2\]\.limit"):
        load_rules(path)
    path.write_text(
        "rules:\n"
        "  - {kind: water_tank, field: level_m, limit: 1.2}\n"
        "  - {kind: water_tank, field: level_m, limit: 1.0}\n",
        encoding="utf-8",
    )
    with pytest.raises(TrendRulesError) as err:
        load_rules(path)
    assert "line 3: rules[1].field" in str(err.value)
    assert "two rules for water_tank.level_m (first at rules[0])" in str(err.value)
    with pytest.raises(ValueError, match="two rules"):  # built in code: the same check
        TrendRules(rules=(HYDRANT_RULE, HYDRANT_RULE))
    path.write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(TrendRulesError, match="not valid YAML"):
        load_rules(path)
    with pytest.raises(TrendRulesError, match="no such file"):
        load_rules(tmp_path / "missing.yaml")
    assert TrendRule(kind="x", field="y", limit=1).clear_margin == 1.25
