"""`microbrain model eval`: both models through the gateway's detector interface, scored
by ultralytics' metric code and by replayed scenarios; the gate refuses a worse one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from microbrain.cli import app
from microbrain.model_card import Evaluation, gate_reasons
from models.datasets import dataset_sha256, load_data_yaml
from models.event_scores import ScenarioError, load_scenarios, replay

CAMERAS = Path(__file__).resolve().parents[2] / "configs" / "cameras"


def _scenarios(tmp_path: Path) -> Path:
    # two stills (cheap): the SSD raises the dog on dog.jpg (its road bicycle is no e-bike),
    # and nothing on person.jpg, where this file expects one: a miss, so its recall is
    # 1/2, its precision 1
    path = tmp_path / "scenarios.yaml"
    path.write_text(
        "scenarios:\n"
        f"  - {{media: 'sample:dog.jpg', camera: '{CAMERAS / 'dog-courtyard.yaml'}',"
        " expect: {unleashed_dog: 1}}\n"
        f"  - {{media: 'sample:person.jpg', camera: '{CAMERAS / 'person-courtyard.yaml'}',"
        " expect: {unleashed_dog: 1}, duration: 20}\n"
    )
    return path


def test_eval_writes_both_models_and_the_gate_refuses_the_worse(trained, tiny_dataset, tmp_path):
    _, candidate = trained
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        app,
        [
            "model",
            "eval",
            str(candidate),
            "--data",
            str(tiny_dataset),
            "--deployed",
            "default",
            "--scenarios",
            str(_scenarios(tmp_path)),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 1, result.output  # refused
    evaluation = Evaluation.model_validate_json(out.read_text())
    d, c = evaluation.deployed, evaluation.candidate
    # the SSD labelled these images itself: it finds its own boxes again
    assert d.map50 > 0.9 and d.map50_95 > 0.8 and d.model.startswith("default:")
    # one epoch from scratch finds nothing yet
    assert c.map50 < d.map50 and c.events_raised == 0 and c.event_recall == 0
    assert (d.events_expected, d.events_raised) == (2, 1)
    assert d.event_precision == 1.0 and d.event_recall == pytest.approx(1 / 2, abs=1e-4)
    assert c.event_precision == 1.0  # nothing raised is no false alarm
    assert evaluation.images == 8 and evaluation.scenarios == 2
    assert evaluation.dataset_sha256 == dataset_sha256(load_data_yaml(tiny_dataset))
    reasons = gate_reasons(evaluation)
    assert any("mAP50" in r for r in reasons) and any("event-level F1" in r for r in reasons)
    assert "REFUSED" in result.output and "mAP50" in result.output
    # the same figures the other way round: the better model passes the gate
    raw = json.loads(out.read_text())
    raw["candidate"], raw["deployed"] = raw["deployed"], raw["candidate"]
    assert gate_reasons(Evaluation.model_validate(raw)) == []


def test_bad_scenarios_are_refused_with_where(tmp_path, ssd):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios:\n  - {media: 'sample:dog.jpg', camera: x.yaml, expected: {}}\n")
    with pytest.raises(ScenarioError, match=r"scenarios\.0\.expected"):
        load_scenarios(bad)
    bad.write_text("scenarios: []\n")
    with pytest.raises(ScenarioError, match="scenarios"):
        load_scenarios(bad)
    with pytest.raises(ScenarioError, match="No such file"):
        load_scenarios(tmp_path / "none.yaml")
    missing = tmp_path / "missing.yaml"
    missing.write_text("scenarios:\n  - {media: 'sample:dog.jpg', camera: nowhere.yaml}\n")
    cases, base = load_scenarios(missing)
    with pytest.raises(ScenarioError, match=r"nowhere\.yaml"):
        replay(cases[0], ssd, base)
    result = CliRunner().invoke(
        app,
        [
            "model",
            "eval",
            "x.onnx",
            "--data",
            str(tmp_path / "none.yaml"),
            "--out",
            str(tmp_path / "e.json"),
        ],
    )
    assert result.exit_code == 2 and "cannot read it" in result.output
