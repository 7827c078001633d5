"""``microbrain bench`` with no name: every benchmark run in --quick form, one table of
headline figures beside their reference and goal, one JSON line of all figures; a
benchmark that fails is named with why, and the exit status says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from microbrain.cli import bench


def test_rows_put_each_figure_beside_its_reference_and_goal() -> None:
    figures = {
        "publish_to_row_p95_ms": 480.5,
        "queue_1000_interactive_ms": 1200.0,
        "queue_1000_dcl_ms": 300.0,
        "queue_first_load_kb": 203.5,
        "alerts_api_p95_rise_pct": 11.0,
        "alerts_api_p95_ms_idle": 12.0,
    }
    table = {row[0]: row[1:] for row in bench.rows("console", figures)}
    assert table["publish_to_row_p95_ms"] == ("480", "", "< 1000", "yes")
    interactive = ("1,200", "queue_1000_dcl_ms = 300", "< 1000", "NO")
    assert table["queue_1000_interactive_ms"] == interactive
    assert table["alerts_api_p95_rise_pct"][3] == "yes"


def test_a_benchmark_without_headlines_lists_its_numbers_and_a_missing_one_shows_a_dash() -> None:
    rows = list(bench.rows("new", {"cycle_s": 0.42, "goal_s": 1.0, "db": "sqlite", "ok": True}))
    assert [r[0] for r in rows] == ["cycle_s"]
    (row,) = bench.rows("edge", {})
    assert row[1] == "—" and row[4] == "—"


def test_running_them_all_tables_what_ran_and_names_what_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bench_fine.py").write_text(
        "import json, sys\n"
        "assert sys.argv[1:] == ['--quick'], sys.argv\n"
        "print('warming up')\n"
        "print(json.dumps({'cycle_s': 0.25, 'devices': 10000}))\n"
    )
    (tmp_path / "bench_broken.py").write_text("raise SystemExit('no broker on 127.0.0.1:1')\n")
    monkeypatch.setattr(bench, "SCRIPTS", tmp_path)
    assert bench.names() == ["broken", "fine"]
    with pytest.raises(typer.Exit) as stop:
        bench.bench(None, quick=False, timeout=60)
    assert stop.value.exit_code == 1  # one failed
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines[0].split() == ["benchmark", "figure", "value", "reference", "goal", "met"]
    assert any(line.split()[:3] == ["fine", "cycle_s", "0.25"] for line in lines)
    assert any(line.startswith("broken") and "no broker" in line for line in lines)
    last = json.loads(lines[-1])
    assert last["fine"] == {"cycle_s": 0.25, "devices": 10000}
    assert "no broker" in last["broken"]["error"]
    assert "[2/2] fine: done" in out.err
