"""``microbrain bench NAME``: run one of the benchmarks under scripts/ (source checkout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from microbrain.cli.errors import fail

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
NAMES = ("edge", "uplink", "ingest", "broker", "console", "response")


def bench(
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(NAMES)}")],
    quick: Annotated[bool, typer.Option("--quick", help="a bounded run of about a minute")] = False,
) -> None:
    """Run a benchmark; its last line is one JSON object of figures.

    Example:  microbrain bench uplink --quick

    Each benchmark measures its figure and the reference it is compared with in the same
    run (see the script's --help for its options: python scripts/bench_NAME.py --help).
    """
    if name not in NAMES:
        fail(f"unknown benchmark {name!r}; choose one of {', '.join(NAMES)}")
    script = SCRIPTS / f"bench_{name}.py"
    if not script.is_file():
        fail(f"{script} not found: benchmarks run from a source checkout (pip install -e .)")
    args = [sys.executable, str(script), *(["--quick"] if quick else [])]
    raise typer.Exit(subprocess.call(args))
