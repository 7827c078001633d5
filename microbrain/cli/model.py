"""``microbrain model …``: look at a detector before it goes to a gateway."""

from __future__ import annotations

import hashlib
import statistics
import time
from pathlib import Path
from typing import Annotated

import typer

from microbrain.cli.errors import fail


def check(
    model: Annotated[
        str | None, typer.Argument(help="model file; default: the bundled COCO SSD")
    ] = None,
    type_: Annotated[str, typer.Option("--type", help="opencv_tf or onnx_yolo")] = "opencv_tf",
    config: Annotated[str | None, typer.Option(help="opencv_tf: the .pbtxt graph config")] = None,
    input_size: Annotated[
        int | None, typer.Option(help="network input size (default per type)")
    ] = None,
    image: Annotated[
        str, typer.Option(help="image to run on: a path or sample:NAME")
    ] = "sample:dog.jpg",
    runs: Annotated[int, typer.Option(min=1, max=1000, help="timed runs (median reported)")] = 10,
    threads: Annotated[int, typer.Option(min=1, max=64)] = 2,
) -> None:
    """Load a detector, run it on an image, print its classes, speed and detections.

    Example:  microbrain model check                     (the bundled COCO SSD on dog.jpg)

    Example:  microbrain model check runs/best.onnx --type onnx_yolo --input-size 320

    Exits 2 when the file is not a usable model (the error names it and why).
    """
    import cv2

    from edge.video.detectors import DetectorError, load_detector
    from microbrain.resources import ResourceMissing, default_model, resolve_source
    from microbrain.site.cameras import DetectorConfig

    try:
        # validated like a site file's detector: an unknown --type names the known ones
        detector_config = DetectorConfig.model_validate(
            {
                "type": type_,
                "model": model,
                "config": config,
                "input_size": input_size,
                "threads": threads,
            }
        )
        picture = cv2.imread(resolve_source(image))
        if picture is None:
            fail(f"cannot read image {image!r}")
        detector = load_detector(detector_config)
        model_file = Path(model) if model else default_model()[0]
    except (DetectorError, ResourceMissing, ValueError) as err:
        fail(str(err))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        found = detector.detect(picture)
        times.append((time.perf_counter() - start) * 1000)
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    typer.echo(
        f"model     {detector.name} {detector.version}  ({model_file}, sha256 {digest[:16]}…)"
    )
    typer.echo(
        f"classes   {len(detector.class_names)}: {', '.join(detector.class_names[:12])}"
        + (" …" if len(detector.class_names) > 12 else "")
    )
    typer.echo(
        f"speed     median {statistics.median(times):.1f} ms over {runs} run(s), "
        f"{threads} thread(s), input {detector.input_size}"
        + (
            " (any shape: can look at windows around zones and motion)"
            if detector.any_input_size
            else " (fixed shape: always the whole frame)"
        )
    )
    keep = found.confidence >= detector.score_threshold
    typer.echo(
        f"found     {int(keep.sum())} object(s) at score ≥ {detector.score_threshold} in {image}"
    )
    names = [n for n, k in zip(found.names, keep, strict=True) if k]
    for box, name, score in zip(found.xyxy[keep], names, found.confidence[keep], strict=True):
        typer.echo(f"          {name:<12} {score:.2f}  [{', '.join(str(int(v)) for v in box)}]")
