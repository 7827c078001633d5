"""Build the YOLO model that ``bench_edge.py --yolo-onnx`` compares against ultralytics.

No pretrained YOLO weights can be downloaded here, and a model built from yaml detects
nothing, so the motion gate and the tracker would rest more than with a real model.
This trains yolov8n from scratch on frames of vtest.avi labelled by the default COCO SSD
(pseudo-labels: people, cars, the van), until it finds them in that scene like a real
model would, then exports it to ONNX with dynamic shapes. It is a benchmark fixture, not
a product model: it knows one scene.

Runs the labelling here (the gateway's environment) and the training in an environment
with ultralytics (``--ultralytics-python``; torch==2.14.1 torchvision==0.29.1
ultralytics onnx onnxslim lap). Nothing is downloaded (YOLO_OFFLINE=1; set
YOLO_CONFIG_DIR to a folder holding ``Ultralytics/Arial.ttf``, any TTF, so ultralytics
does not try to fetch its font).

Usage: .venv/bin/python scripts/build_bench_yolo.py --ultralytics-python PY --out DIR
       [--epochs 80] [--imgsz 320] [--quick]
The last line printed is one JSON object: the model's path and how many boxes it finds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2

from edge.video.detectors import load_detector
from edge.video.sources import FileSource
from microbrain.resources import sample
from microbrain.site.classes import COCO_CLASSES

_TRAIN = """
import json, shutil, sys
from ultralytics import YOLO
data, out, epochs, imgsz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = YOLO("yolov8n.yaml")
model.train(data=data, epochs=epochs, imgsz=imgsz, batch=16, workers=0, device="cpu", plots=False,
            val=False, project=out, name="train", exist_ok=True, amp=False, verbose=False)
path = model.export(format="onnx", dynamic=True, imgsz=imgsz)
target = f"{out}/yolov8n-vtest-{imgsz}-dynamic.onnx"
shutil.move(path, target)
print(json.dumps({"onnx": target}))
"""


def label(out: Path, fps: float, min_score: float = 0.5) -> int:
    """Frames of vtest.avi with the default SSD's boxes as YOLO labels; returns the count."""
    images, labels = out / "images" / "train", out / "labels" / "train"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    detector = load_detector()
    count = 0
    for frame in FileSource("label", str(sample("vtest.avi")), fps).frames():
        found = detector.detect(frame.image)
        found = found[found.confidence >= min_score]
        h, w = frame.image.shape[:2]
        name = f"vtest_{frame.index:04d}"
        cv2.imwrite(str(images / f"{name}.jpg"), frame.image)
        # YOLO labels: class, then centre and size as fractions of the frame
        rows = [
            f"{c} {(x0 + x1) / 2 / w:.5f} {(y0 + y1) / 2 / h:.5f} "
            f"{(x1 - x0) / w:.5f} {(y1 - y0) / h:.5f}"
            for (x0, y0, x1, y1), c in zip(found.xyxy, found.class_id, strict=True)
        ]
        (labels / f"{name}.txt").write_text("".join(r + "\n" for r in rows))
        count += 1
        print(f"\rlabelled {count} frames", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(COCO_CLASSES))
    (out / "data.yaml").write_text(
        f"path: {out}\ntrain: images/train\nval: images/train\nnames:\n{names}"
    )
    return count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ultralytics-python", required=True, help="python of an environment with ultralytics"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the data set, the run and the model"
    )
    parser.add_argument(
        "--epochs", type=int, default=80, help="training epochs (about 30 s each on 2 cores)"
    )
    parser.add_argument("--imgsz", type=int, default=320, help="training and export size")
    parser.add_argument(
        "--quick", action="store_true", help="3 epochs: checks the path, finds little"
    )
    args = parser.parse_args()
    out = args.out.resolve()
    frames = label(out, fps=2.0)
    epochs = 3 if args.quick else args.epochs
    print(
        f"training yolov8n from scratch: {frames} frames, {epochs} epochs at {args.imgsz}",
        flush=True,
    )
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    result = subprocess.run(
        [
            args.ultralytics_python,
            "-c",
            _TRAIN,
            str(out / "data.yaml"),
            str(out),
            str(epochs),
            str(args.imgsz),
        ],
        env=env,
        check=False,
        stdout=subprocess.PIPE,
        text=True,
    )
    if result.returncode != 0:
        print(result.stdout, end="")
        sys.exit(f"training failed (exit {result.returncode}); its log is above")
    model = json.loads(result.stdout.strip().splitlines()[-1])["onnx"]
    from edge.video.detectors.onnx_yolo import OnnxYoloDetector

    check = OnnxYoloDetector(Path(model), score_threshold=0.4)
    frame = next(iter(FileSource("check", str(sample("vtest.avi")), 1).frames()))
    found = check.detect(frame.image)
    print(
        json.dumps(
            {
                "onnx": model,
                "epochs": epochs,
                "imgsz": args.imgsz,
                "labelled_frames": frames,
                "boxes_on_first_frame": int((found.confidence >= 0.4).sum()),
            }
        )
    )


if __name__ == "__main__":
    main()
