"""Event-level scoring: replay scenario clips through the edge pipeline with a model.

A scenario file (YAML) lists clips or still images, the camera config that watches them
(zones and rules) and the events a good model raises there::

    scenarios:
      - media: sample:vtest.avi
        camera: ../../configs/cameras/vtest-fire-lane.yaml   # relative to this file
        expect: {illegal_parking: 1}
      - media: sample:person.jpg                             # a still: --duration seconds
        camera: ../../configs/cameras/person-courtyard.yaml
        expect: {}                                           # nothing may be raised

Each clip runs through ``CameraPipeline`` exactly as ``microbrain edge analyze`` runs it
(video time, deterministic). Per scenario and event kind, min(raised, expected) events
are right; precision is right / raised, recall right / expected, over all scenarios.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

DEFAULT_SCENARIOS = Path(__file__).parent / "scenarios" / "default.yaml"
# the wall time of a clip's first frame when a scenario names none (as edge analyze)
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)

Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class ScenarioError(ValueError):
    """A scenario file or one of its clips that cannot be replayed; names the fix."""


class Scenario(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    media: str = Field(min_length=1, max_length=500, description="file or sample:NAME")
    camera: str = Field(min_length=1, max_length=500, description="camera YAML")
    expect: dict[Kind, Annotated[int, Field(ge=0, le=1000)]] = Field(default_factory=dict)
    duration: float = Field(default=30.0, gt=0, le=3600, description="a still's seconds")
    fps: float | None = Field(default=None, gt=0, le=30)
    start: datetime | None = None


class ScenarioFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scenarios: list[Scenario] = Field(min_length=1, max_length=500)


@dataclass(frozen=True)
class EventScores:
    precision: float
    recall: float
    expected: int
    raised: int
    scenarios: int
    # per scenario (media): the raised events by kind, for the printout
    raised_by_scenario: tuple[tuple[str, dict[str, int]], ...]


def load_scenarios(path: Path) -> tuple[list[Scenario], Path]:
    """The scenarios of a file and the folder their relative paths start from."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        parsed = ScenarioFile.model_validate(raw)
    except OSError as err:
        raise ScenarioError(f"scenario file {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(f"scenario file {path}: not YAML ({err})") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ScenarioError(f"scenario file {path}: {where}: {first['msg']}") from None
    return parsed.scenarios, path.parent.resolve()


def replay(scenario: Scenario, detector: Any, base: Path) -> Counter[str]:
    """The events (by kind) that ``detector`` raises on one scenario's clip."""
    from edge.video.pipeline import CameraError, CameraPipeline, PipelineOptions
    from edge.video.sources import LiveSource, SourceError, open_source
    from microbrain.protocol.payloads import Event, EventState
    from microbrain.site.loader import SiteError, load_camera

    camera_path = Path(scenario.camera)
    if not camera_path.is_absolute():
        camera_path = base / camera_path
    media = scenario.media
    if not media.startswith("sample:") and not Path(media).is_absolute():
        media = str(base / media)
    try:
        cam = load_camera(camera_path)
    except SiteError as err:
        raise ScenarioError(f"scenario {scenario.media}: {err}") from None
    updates: dict[str, object] = {"source": media}
    if scenario.fps is not None:
        updates["fps"] = scenario.fps
    cam = cam.model_copy(update=updates)
    raised: Counter[str] = Counter()

    def emit(event: Event) -> None:
        if event.state == EventState.RAISED:
            raised[event.kind] += 1

    pipeline = CameraPipeline(cam, detector, emit, None, PipelineOptions())
    try:
        source = open_source(cam, base, scenario.start or DEFAULT_START, scenario.duration)
        if isinstance(source, LiveSource):
            raise ScenarioError(f"scenario {scenario.media}: a live stream cannot be replayed")
        for frame in source.frames():
            pipeline.process(frame)
    except (SourceError, CameraError) as err:
        raise ScenarioError(f"scenario {scenario.media}: {err}") from None
    pipeline.finish()
    return raised


def score_events(
    detector: Any,
    scenarios: list[Scenario],
    base: Path,
    on_scenario: Callable[[Scenario], None] | None = None,
) -> EventScores:
    """Replay every scenario with ``detector`` and score its events against the expected."""
    right = raised_total = expected_total = 0
    per: list[tuple[str, dict[str, int]]] = []
    for scenario in scenarios:
        raised = replay(scenario, detector, base)
        for kind in set(raised) | set(scenario.expect):
            right += min(raised[kind], scenario.expect.get(kind, 0))
        raised_total += sum(raised.values())
        expected_total += sum(scenario.expect.values())
        per.append((scenario.media, dict(sorted(raised.items()))))
        if on_scenario is not None:
            on_scenario(scenario)
    # nothing raised is no false alarm; nothing expected is nothing missed
    precision = right / raised_total if raised_total else 1.0
    recall = right / expected_total if expected_total else 1.0
    return EventScores(precision, recall, expected_total, raised_total, len(scenarios), tuple(per))
