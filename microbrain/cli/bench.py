"""``microbrain bench``: run the benchmarks under scripts/ (source checkout) — one, or all
of them in ``--quick`` form with one table of their headline figures.

Every benchmark measures its figure and the reference it is compared with in the same
run and prints, as its last line, one JSON object of its figures. The table reads those
objects: :data:`HEADLINES` names, per benchmark, the figures worth a row, the figure
measured beside each (its reference) and the goal the issue set. A benchmark without
headlines still gets its numeric figures listed.
"""

from __future__ import annotations

import json
import math
import operator
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from microbrain.cli.errors import fail

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
PREFIX = "bench_"


@dataclass(frozen=True, slots=True)
class Headline:
    """One row of the table: ``figure`` (a key of the benchmark's JSON; ``a.b`` reaches
    into a nested object), the ``reference`` key measured beside it, and its goal."""

    figure: str
    reference: str | None = None
    goal: tuple[str, float] | None = None  # ("<", 1000.0): the figure must be below 1000


OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

HEADLINES: dict[str, tuple[Headline, ...]] = {
    "edge": (Headline("pipeline_over_raw_detector", "raw_detector_ms_median", ("<=", 1.15)),),
    # a model swap on a running 5 fps camera: no frame lost, none delayed by more than
    # one inference (the worst frame outside any swap shows the machine's own noise)
    "model_swap": (
        Headline("frames_lost", "frames_analysed", ("<=", 0.0)),
        Headline("worst_swap_frame_extra_delay_ms", "inference_ms_median"),
        Headline("swap_extra_delay_over_inference", "steady_worst_extra_delay_ms", ("<=", 1.0)),
        Headline("install_s_median", "swap_pickup_ms_max"),
    ),
    "uplink": (
        Headline("replay_over_raw_publish", "raw_paho_qos1_publish_msg_per_s", (">=", 0.8)),
        Headline("outbox_append_batch100_over_raw_publish", "raw_paho_qos1_publish_msg_per_s"),
    ),
    "broker": (Headline("mosquitto_qos1_msg_s"),),
    "clips": (
        Headline("vp8_cpu_ms_per_frame", "mjpeg_cpu_ms_per_frame"),
        Headline("worst_frame_stall_spread_ms", "whole_clip_at_once_ms"),
    ),
    "ingest": (
        Headline("ingest_sqlite_msgs_per_s", "raw_broker_to_subscriber_msgs_per_s"),
        Headline("ingest_sqlite_ratio_to_raw"),
        Headline("stream_latency_p99_ms", None, ("<", 1000.0)),
    ),
    "console": (
        Headline("publish_to_row_p95_ms", None, ("<", 1000.0)),
        Headline("queue_1000_interactive_ms", "queue_1000_dcl_ms", ("<", 1000.0)),
        Headline("queue_first_load_kb", None, ("<", 300.0)),
        Headline("alerts_api_p95_rise_pct", "alerts_api_p95_ms_idle", ("<", 20.0)),
    ),
    "response": (
        Headline(
            "publish_to_webhook_p95_ms", "reference_publish_to_stream_opened_max_ms", ("<", 1000.0)
        ),
        Headline("webhook_posts_lost", None, ("<=", 0.0)),
    ),
    "appeals": (Headline("intake_photos_per_s", "healthz_per_s", (">=", 50.0)),),
    "awareness": (
        Headline("cycle_median_s", "reference_reads_median_s", ("<", 1.0)),
        Headline("cycle_p95_s", None, ("<", 1.0)),
    ),
    "warning": (Headline("cycle_s", "old_path_extrapolated_s", ("<", 10.0)),),
    "daily_report": (
        Headline("report_json_s", "floor_count_s", ("<", 10.0)),
        Headline("json_html_pdf_s", "render_pdf_s", ("<", 10.0)),
    ),
    "assistant": (
        Headline("p95_ms", "reference_p95_ms", ("<", 300.0)),
        Headline("worst_question_p95_ms", None, ("<", 300.0)),
    ),
    # a rollout to 100 simulated gateways: all installed within 60 s of the promotion,
    # beside the same downloads with no rollout around them
    "rollout": (
        Headline("last_install_after_promotion_s", "reference_raw_downloads_s", ("<=", 60.0)),
    ),
    # made scenes (models/scenes.py): exactly one alert per violation, nothing else
    "scenes": (
        Headline("precision", None, (">=", 0.95)),
        Headline("recall", None, (">=", 0.90)),
        Headline("worst_late_s", None, ("<=", 0.0)),
        Headline("false_clears", None, ("<=", 0.0)),
    ),
    # the e-bike check: the issue's ~25 ms per crop on 2 threads; its cost per camera
    # (crops per second × ms) beside the detector's on the same camera
    "two_wheelers": (
        Headline("classifier_ms_median", "detector_ms_median", ("<=", 25.0)),
        Headline("accuracy_all", "accuracy_real"),
        Headline("bikes_classifier_ms_per_s", "bikes_detector_ms_per_s"),
    ),
}


def names() -> list[str]:
    """The benchmarks in this checkout: ``scripts/bench_<name>.py``."""
    return sorted(p.stem.removeprefix(PREFIX) for p in SCRIPTS.glob(f"{PREFIX}*.py"))


def _lookup(figures: dict[str, Any], key: str) -> Any:
    value: Any = figures
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def rows(name: str, figures: dict[str, Any]) -> Iterator[tuple[str, str, str, str, str]]:
    """(figure, value, reference, goal, met) for the table."""
    headlines = HEADLINES.get(name)
    if headlines is None:  # no headlines: every top-level number
        headlines = tuple(
            Headline(k) for k, v in figures.items() if _number(v) is not None and "goal" not in k
        )
    for h in headlines:
        value = _lookup(figures, h.figure)
        reference = f"{h.reference} = {_show(_lookup(figures, h.reference))}" if h.reference else ""
        goal = met = ""
        if h.goal is not None:
            op, bound = h.goal
            goal = f"{op} {bound:g}"
            number = _number(value)
            met = "—" if number is None else ("yes" if OPS[op](number, bound) else "NO")
        yield h.figure, _show(value), reference, goal, met


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            parsed = json.loads(line)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _run(name: str, quick: bool, timeout_s: float) -> tuple[dict[str, Any] | None, str, float]:
    """Run one benchmark; its figures (None on failure), why it failed, and its seconds."""
    script = SCRIPTS / f"{PREFIX}{name}.py"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(script), *(["--quick"] if quick else [])],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=SCRIPTS.parent,
        )
    except subprocess.TimeoutExpired:
        return None, f"no result within {timeout_s:g} s (--timeout)", time.monotonic() - started
    elapsed = time.monotonic() - started
    figures = _last_json(done.stdout)
    if done.returncode != 0 or figures is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"exit {done.returncode}: {tail[0][:200]}", elapsed
    return figures, "", elapsed


def _table(lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _all(chosen: list[str], timeout_s: float) -> int:
    results: dict[str, Any] = {}
    table: list[tuple[str, ...]] = [("benchmark", "figure", "value", "reference", "goal", "met")]
    failed = 0
    for i, name in enumerate(chosen, 1):
        typer.echo(f"[{i}/{len(chosen)}] {name} --quick …", err=True)
        figures, why, elapsed = _run(name, True, timeout_s)
        typer.echo(f"[{i}/{len(chosen)}] {name}: {why or 'done'} ({elapsed:.0f} s)", err=True)
        if figures is None:
            failed += 1
            results[name] = {"error": why}
            table.append((name, "(failed)", why[:60], "", "", ""))
            continue
        results[name] = figures
        table.extend((name, *row) for row in rows(name, figures))
    typer.echo(_table(table))
    typer.echo(json.dumps(results, ensure_ascii=False))
    return 1 if failed else 0


def bench(
    name: Annotated[
        str | None,
        typer.Argument(help="one benchmark (scripts/bench_NAME.py); none: all of them, --quick"),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="a bounded run of about a minute")] = False,
    timeout: Annotated[
        float, typer.Option(help="seconds one benchmark may take when running them all")
    ] = 600.0,
) -> None:
    """Run a benchmark, or every benchmark in --quick form with one table.

    Example:  microbrain bench uplink --quick

    Example:  microbrain bench            (all of them, --quick: a table, then their JSON)

    Each benchmark measures its figure and the reference it is compared with in the same
    run (see the script's --help for its options: python scripts/bench_NAME.py --help).
    With no NAME the table lists each benchmark's headline figures beside their reference
    and goal; the last line is one JSON object of every benchmark's figures. The exit
    status is 1 when a benchmark failed to run (a goal not met is shown, not an error).
    """
    available = names()
    if not available:
        fail(f"no benchmarks in {SCRIPTS}: they run from a source checkout (pip install -e .)")
    if name is None:
        raise typer.Exit(_all(available, timeout))
    if name not in available:
        fail(f"unknown benchmark {name!r}; choose one of {', '.join(available)}")
    script = SCRIPTS / f"{PREFIX}{name}.py"
    command = [sys.executable, str(script), *(["--quick"] if quick else [])]
    raise typer.Exit(subprocess.call(command))
