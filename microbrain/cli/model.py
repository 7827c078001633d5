"""``microbrain model …``: look at a detector before it goes to a gateway."""

from __future__ import annotations

import functools
import hashlib
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

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


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def train(
    data: Annotated[Path, typer.Option("--data", help="YOLO data.yaml (train/val/names)")],
    base: Annotated[
        str,
        typer.Option(
            "--base",
            help="architecture yaml shipped with ultralytics (yolov8n.yaml, yolo11n.yaml: "
            "from scratch) or a local .pt checkpoint; nothing is downloaded",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="folder for model.pt, model.json, run/")
    ] = Path("runs/train"),
    epochs: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    imgsz: Annotated[int, typer.Option(min=32, max=2048, help="training image size")] = 320,
    batch: Annotated[int, typer.Option(min=1, max=1024)] = 16,
    device: Annotated[str, typer.Option(help="cpu, or a CUDA device such as 0")] = "cpu",
    val: Annotated[bool, typer.Option("--val/--no-val", help="validate after each epoch")] = True,
) -> None:
    """Train a detector with ultralytics, fully offline, with a progress bar per epoch.

    Example:  microbrain model train --data ds/data.yaml --base yolov8n.yaml --epochs 80

    Writes OUT/model.pt (the checkpoint to export) and OUT/model.json (base, dataset
    sha256, classes). Needs the train extra: pip install -e '.[train]'.
    """
    from models.datasets import DatasetError
    from models.offline import OfflineError
    from models.training import TrainingError
    from models.training import train as run_training

    with _progress() as bar:
        task = bar.add_task(f"training {base}", total=epochs)

        def on_epoch(done: int, total: int, metrics: dict[str, float]) -> None:
            shown = {k.split("/")[-1]: v for k, v in metrics.items() if "mAP50" in k or "loss" in k}
            bar.update(
                task,
                completed=min(done, total),
                description=f"epoch {min(done, total)}/{total} "
                + " ".join(f"{k} {v:.3f}" for k, v in sorted(shown.items())[:4]),
            )

        try:
            checkpoint, record = run_training(
                data,
                base,
                out,
                epochs=epochs,
                imgsz=imgsz,
                batch=batch,
                device=device,
                val=val,
                on_epoch=on_epoch,
            )
        except (OfflineError, DatasetError, TrainingError) as err:
            fail(str(err))
    typer.echo(
        f"trained   {checkpoint}  ({record.images} images, {epochs} epoch(s), "
        f"{record.seconds:.0f} s; data sha256 {record.data_sha256[:16]}…)"
    )
    typer.echo(f"next      microbrain model export {checkpoint} --out model.onnx --version 1.0.0")


def export(
    checkpoint: Annotated[Path, typer.Argument(help="model.pt from `microbrain model train`")],
    out: Annotated[Path, typer.Option("--out", help="the ONNX file to write")] = Path("model.onnx"),
    imgsz: Annotated[int, typer.Option(min=32, max=2048, help="default input size")] = 320,
    version: Annotated[
        str, typer.Option(help="the model's version (the registry's manifest carries it)")
    ] = "0.0.0",
) -> None:
    """Export a checkpoint to ONNX for gateways: dynamic input shapes, and metadata with
    the class names, input size, version, training-data sha256 and base model.

    Example:  microbrain model export runs/train/model.pt --out ebike-1.2.0.onnx --version 1.2.0
    """
    from edge.video.detectors import DetectorError
    from edge.video.detectors.onnx_yolo import OnnxYoloDetector
    from models.training import TrainingError
    from models.training import export as run_export

    try:
        written = run_export(checkpoint, out, imgsz=imgsz, version=version)
        detector = OnnxYoloDetector(written, input_size=imgsz)  # loads as a gateway would
    except (TrainingError, DetectorError) as err:
        fail(str(err))
    digest = hashlib.sha256(written.read_bytes()).hexdigest()
    typer.echo(f"exported  {written}  ({written.stat().st_size} bytes, sha256 {digest[:16]}…)")
    typer.echo(
        f"model     {detector.name} {detector.version}, {len(detector.class_names)} classes, "
        f"input {detector.input_size} (any shape: {detector.any_input_size})"
    )


def evaluate(
    candidate: Annotated[str, typer.Argument(help="the candidate's ONNX export")],
    data: Annotated[Path, typer.Option("--data", help="labelled YOLO data.yaml (its val split)")],
    deployed: Annotated[
        str, typer.Option(help="the deployed model: an ONNX file, or default (the bundled SSD)")
    ] = "default",
    scenarios: Annotated[
        Path | None,
        typer.Option(help="scenario YAML (default: models/scenarios/default.yaml)"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="the Evaluation JSON to write")] = Path(
        "eval.json"
    ),
    threads: Annotated[int, typer.Option(min=1, max=64)] = 2,
) -> None:
    """Score a candidate beside the deployed model on the same data: mAP50 and mAP50-95
    (ultralytics' metric code on the detections of the gateway's detector interface) and
    event precision/recall (scenario clips replayed through the edge pipeline).

    Example:  microbrain model eval ebike-1.2.0.onnx --data ds/data.yaml --out eval.json

    Writes the Evaluation (upload it with the model), prints both side by side and the
    gate's verdict. Exits 1 when the gate refuses the candidate, 2 on bad input.
    """
    from edge.video.detectors import DetectorError
    from microbrain.model_card import gate_reasons
    from models.datasets import DatasetError, image_files, load_data_yaml
    from models.evaluation import evaluate as to_evaluation
    from models.evaluation import measure
    from models.event_scores import DEFAULT_SCENARIOS, ScenarioError, load_scenarios

    try:
        spec = load_data_yaml(data)
        cases, base = load_scenarios(scenarios or DEFAULT_SCENARIOS)
        steps = len(image_files(spec.val)) + len(cases)
        with _progress() as bar:
            measured = []
            for role, model in (("candidate", candidate), ("deployed", deployed)):
                task = bar.add_task(f"{role} {Path(model).name}", total=steps)
                measured.append(
                    measure(model, spec, cases, base, threads, functools.partial(bar.advance, task))
                )
        evaluation = to_evaluation(measured[0], measured[1], spec, len(cases))
    except (DatasetError, ScenarioError, DetectorError) as err:
        fail(str(err))
    out.write_text(evaluation.model_dump_json(indent=2) + "\n")
    c, d = evaluation.candidate, evaluation.deployed
    typer.echo(f"{'':<18}{'candidate':>12}{'deployed':>12}")
    for label, a, b in (
        ("mAP50", c.map50, d.map50),
        ("mAP50-95", c.map50_95, d.map50_95),
        ("event precision", c.event_precision, d.event_precision),
        ("event recall", c.event_recall, d.event_recall),
        ("event F1", c.event_f1, d.event_f1),
    ):
        typer.echo(f"{label:<18}{a:>12.3f}{b:>12.3f}")
    typer.echo(f"{'events raised':<18}{c.events_raised:>12}{d.events_raised:>12}")
    typer.echo(
        f"on {evaluation.images} image(s), {evaluation.scenarios} scenario(s), "
        f"{c.events_expected} expected event(s); written to {out}"
    )
    reasons = gate_reasons(evaluation)
    if reasons:
        typer.echo("gate      REFUSED: " + "; ".join(reasons))
        raise typer.Exit(1)
    typer.echo("gate      passed: the candidate may roll out")


def _labeller(model: str, threads: int) -> tuple[Any, str]:
    from edge.video.detectors import DetectorError
    from models.evaluation import load_model

    try:
        return load_model(model, threads)
    except DetectorError as err:
        fail(str(err))


def autolabel(
    folder: Annotated[Path, typer.Argument(help="folder of frames collected from gateways")],
    out: Annotated[Path, typer.Option("--out", help="the YOLO dataset to write")],
    model: Annotated[
        str, typer.Option(help="labelling model: an ONNX export, or default (the bundled SSD)")
    ] = "default",
    threads: Annotated[int, typer.Option(min=1, max=64)] = 2,
) -> None:
    """Pre-label a folder of frames into a YOLO dataset (images/, labels/, data.yaml,
    manifest.jsonl) in microbrain's classes, for a human to review.

    Example:  microbrain model autolabel frames/ --out ds-review
    """
    from models.field_data import autolabel as run_autolabel

    if not folder.is_dir():
        fail(f"{folder}: no such folder")
    detector, name = _labeller(model, threads)
    with _progress() as bar:
        task = bar.add_task("labelling", total=None)
        data_yaml, summary = run_autolabel(folder, out, detector, name, lambda: bar.advance(task))
    typer.echo(f"labelled  {summary.images} image(s), {summary.boxes} box(es) → {data_yaml}")
    for reason, count in sorted(summary.skipped.items()):
        typer.echo(f"skipped   {count} × {reason}")


def dataset_export(
    cloud: Annotated[str, typer.Option("--cloud", help="the cloud's URL, e.g. http://cloud:8000")],
    user: Annotated[str, typer.Option("--user", help="a console user")],
    out: Annotated[Path, typer.Option("--out", help="the YOLO dataset to write")],
    password_env: Annotated[
        str, typer.Option(help="environment variable holding the password")
    ] = "MB_CLOUD_PASSWORD",
    since: Annotated[
        datetime | None, typer.Option(help="alerts opened at or after (ISO; UTC if no zone)")
    ] = None,
    model: Annotated[
        str, typer.Option(help="labelling model: an ONNX export, or default (the bundled SSD)")
    ] = "default",
    threads: Annotated[int, typer.Option(min=1, max=64)] = 2,
) -> None:
    """The console's verdicts become a YOLO dataset: confirmed alerts' frames pre-labelled
    by the current model, false positives' frames as background images, and
    manifest.jsonl (alert, event, gateway, camera, kind, verdict, evidence sha256, model).

    Example:  MB_CLOUD_PASSWORD=… microbrain model dataset export --cloud http://cloud:8000
    --user engineer --out field-2026-12
    """
    import os

    from models.field_data import CloudClient, FieldDataError, export_verdicts

    password = os.environ.get(password_env)
    if not password:
        fail(f"set the password of {user!r} in the environment variable {password_env}")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    detector, name = _labeller(model, threads)
    try:
        client = CloudClient(cloud, user, password)
        try:
            with _progress() as bar:
                task = bar.add_task("reviewed alerts", total=None)
                data_yaml, summary = export_verdicts(
                    client, out, detector, name, since, lambda: bar.advance(task)
                )
        finally:
            client.close()
    except FieldDataError as err:
        fail(str(err))
    by = ", ".join(f"{v} {k}" for k, v in sorted(summary.by_verdict.items())) or "none"
    typer.echo(f"exported  {summary.images} image(s) ({by}), {summary.boxes} box(es) → {data_yaml}")
    for reason, count in sorted(summary.skipped.items()):
        typer.echo(f"skipped   {count} × {reason}")
    typer.echo(
        f"review    the labels (manifest.jsonl says where each frame came from), then: "
        f"microbrain model train --data {data_yaml} --base yolov8n.yaml"
    )
