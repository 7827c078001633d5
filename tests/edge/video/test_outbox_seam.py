"""The pipeline's ``emit`` plugs straight into the gateway's outbox, which stamps ``seq``."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.outbox import Outbox
from edge.video.detectors import load_detector
from edge.video.evidence import EvidenceStore
from edge.video.pipeline import CameraPipeline
from edge.video.sources import open_source
from microbrain.protocol.payloads import Event
from microbrain.site.cameras import Camera

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "cameras"


def test_events_land_in_the_outbox_with_sequence_numbers(tmp_path):
    # two events: the dog, and the road bicycle under a rule that watches every
    # two-wheeler (by default ebike_charging watches e-bikes only)
    doc = yaml.safe_load((CONFIGS / "dog-courtyard.yaml").read_text())
    doc["zones"][1]["rules"][0]["classes"] = ["bicycle", "motorcycle", "ebike"]
    camera = Camera.model_validate(doc)
    with Outbox(tmp_path / "outbox.db") as outbox:

        def emit(event: Event) -> None:
            outbox.append(event)  # the stamped copy it returns is the outbox's business

        pipeline = CameraPipeline(
            camera, load_detector(), emit, EvidenceStore(tmp_path / "evidence")
        )
        for frame in open_source(camera, still_duration_s=12).frames():
            pipeline.process(frame)
        items = outbox.after(0)
    events = [Event.model_validate_json(item.payload) for item in items]
    assert [e.seq for e in events] == [1, 2]
    assert sorted(e.kind for e in events) == ["ebike_charging", "unleashed_dog"]
    assert all((tmp_path / "evidence" / e.evidence[0].name).is_file() for e in events)
