"""A model swap on a running camera pipeline (real video, real onnxruntime models): it
happens between two frames, no frame is lost or analysed twice, and tracks carry over —
also when the new model orders its classes differently."""

from __future__ import annotations

import threading
from pathlib import Path

from edge.video.detectors import load_detector
from edge.video.pipeline import CameraPipeline, PipelineOptions
from edge.video.sources import FileSource, Frame
from microbrain.site.cameras import DetectorConfig
from microbrain.site.loader import load_camera
from tests.edge.model_update.helpers import tiny_model

ROOT = Path(__file__).resolve().parents[3]
FRAMES = 40


def test_a_swap_on_a_running_pipeline_loses_no_frame_and_keeps_tracks(
    tmp_path: Path, sample_media
) -> None:
    camera = load_camera(ROOT / "configs" / "cameras" / "vtest-fire-lane.yaml")
    camera = camera.model_copy(update={"fps": 5.0})
    old = load_detector(
        DetectorConfig(type="onnx_yolo", model=str(tiny_model(tmp_path / "a.onnx")))
    )
    # another file, its classes in another order: "person" is now class 1
    new = load_detector(
        DetectorConfig(
            type="onnx_yolo",
            model=str(tiny_model(tmp_path / "b.onnx", 161, ("car", "person"), hit=1)),
        )
    )
    pipeline = CameraPipeline(camera, old, options=PipelineOptions(motion_gate=False))
    frames: list[Frame] = []
    for frame in FileSource(camera.id, str(sample_media("vtest.avi")), camera.fps).frames():
        frames.append(frame)
        if len(frames) == FRAMES:
            break
    seen: list[tuple[float, str, list[int], list[str]]] = []

    halfway, swapped = threading.Event(), threading.Event()

    def run() -> None:
        for n, frame in enumerate(frames, 1):
            pipeline.process(frame)
            tracked = pipeline.tracked
            seen.append((frame.ts, pipeline.model.version, list(tracked.tracker_id), tracked.names))
            if n == FRAMES // 2:  # mid-stream: let the other thread swap, whatever the load
                halfway.set()
                swapped.wait(60)

    worker = threading.Thread(target=run)
    worker.start()
    assert halfway.wait(60)
    pipeline.use_detector(new)  # from another thread, between two frames of a running stream
    swapped.set()
    worker.join(60)

    # every frame analysed once, in order
    assert [ts for ts, *_ in seen] == [f.ts for f in frames]
    assert pipeline.stats.frames == FRAMES
    versions = [v for _, v, *_ in seen]
    k = versions.index(new.version)
    assert k == FRAMES // 2 and versions == [old.version] * k + [new.version] * (FRAMES - k)
    # the person's track goes on through the swap: same id, same class name
    before, after = seen[k - 1], seen[k]
    assert before[2] and before[2] == after[2] == seen[-1][2]
    assert before[3] == after[3] == ["person"]
    assert pipeline.tracked.class_names == ("car", "person")
