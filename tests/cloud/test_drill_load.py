"""The load drill's CI version: a few gateways for a few seconds against one and two
cloud processes (PostgreSQL, a private Mosquitto): nothing lost, nothing stored twice,
every event's evidence stored, every alert timed. The long runs are
`scripts/drill_load.py` (see its --help)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_the_drill_loses_and_duplicates_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/drill_load.py", "--ci"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for n in (1, 2):
        assert figures[f"p{n}_lost"] == 0
        assert figures[f"p{n}_duplicated"] == 0
        assert figures[f"p{n}_events"] > 0
        assert figures[f"p{n}_evidence_stored"] == figures[f"p{n}_events"]
        assert figures[f"p{n}_alert_p50_ms"] is not None
        assert len(figures[f"p{n}_cpu_percent"]) == n and all(figures[f"p{n}_rss_mb"])
