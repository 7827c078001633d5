"""Ultralytics YOLO exports (v8/11/26) through onnxruntime.

Two output layouts exist: ``[1, 4 + nc, N]`` (centre-x, centre-y, w, h, then one score
per class; no NMS in the graph: we run it in numpy) and the end-to-end ``[1, N, 6]``
(x1, y1, x2, y2, score, class; NMS-free heads and ``nms=True`` exports).
"""

from __future__ import annotations

import ast
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
)

from edge.video.detections import Detections
from edge.video.detectors import (
    LOW_SCORE,
    DetectorError,
    merge_relabelled,
    resolve_model_path,
)
from edge.video.geometry import nms
from edge.video.regions import Rect
from microbrain.site.cameras import DetectorConfig

DEFAULT_STRIDE = 32  # YOLO's largest feature stride (P6 models: 64; exports write it)


def _names_from_metadata(meta: dict[str, str], nc: int | None, where: str) -> tuple[str, ...]:
    raw = meta.get("names")
    if raw is None:
        if nc is None:
            raise DetectorError(f"model {where}: no 'names' in its metadata and no class count")
        return tuple(f"class{i}" for i in range(nc))
    try:
        names = ast.literal_eval(raw)  # ultralytics writes a Python dict literal
    except (ValueError, SyntaxError):
        raise DetectorError(f"model {where}: metadata 'names' is not a dict literal") from None
    if isinstance(names, dict):
        return tuple(str(names[k]) for k in sorted(names))
    if isinstance(names, list | tuple):
        return tuple(str(n) for n in names)
    raise DetectorError(f"model {where}: metadata 'names' is not a dict or list")


def letterbox(
    image: np.ndarray, size: tuple[int, int], scale: float | None = None
) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio (by ``scale``, or to fit) and pad with grey to
    ``size`` (h, w); returns the padded image, the scale and the (x, y) padding, to map
    boxes back."""
    h, w = image.shape[:2]
    th, tw = size
    if scale is None:
        scale = min(th / h, tw / w)
    nh, nw = min(th, max(1, round(h * scale))), min(tw, max(1, round(w * scale)))
    resized = (
        cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else image
    )
    top, left = (th - nh) // 2, (tw - nw) // 2
    out = cv2.copyMakeBorder(
        resized,
        top,
        th - nh - top,
        left,
        tw - nw - left,
        cv2.BORDER_CONSTANT,
        value=(114, 114, 114),
    )
    return out, scale, (float(left), float(top))


def _exported_size(meta: dict[str, str]) -> int:
    """The longer side of the ``imgsz`` ultralytics exported at (metadata), else 640."""
    try:
        size = ast.literal_eval(meta.get("imgsz", "640"))
        size = max(size) if isinstance(size, list | tuple) else size
        return int(size) if isinstance(size, int) and 32 <= size <= 2048 else 640
    except (ValueError, SyntaxError, TypeError):
        return 640


def _stride_up(n: float, stride: int) -> int:
    return max(stride, int(np.ceil(n / stride)) * stride)


def _stride(meta: dict[str, str]) -> int:
    """The model's largest stride from its metadata (ultralytics writes it), else 32."""
    try:
        stride = int(meta.get("stride", DEFAULT_STRIDE))
    except ValueError:
        return DEFAULT_STRIDE
    return stride if stride in (8, 16, 32, 64, 128) else DEFAULT_STRIDE


class OnnxYoloDetector:
    """A YOLO ONNX model; one session (with ``threads`` intra-op threads) for all cameras."""

    def __init__(
        self,
        model: Path,
        input_size: int | None = None,
        score_threshold: float = 0.4,
        nms_iou: float = 0.45,
        threads: int = 2,
    ) -> None:
        self.model_path = model
        where = repr(str(model))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # no busy-waiting between ops: a gateway shares its few cores with other cameras'
        # threads, and spinning workers steal them (2 threads: 26 ms instead of 47 ms for
        # yolov8n-320 on a loaded 2-core box)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        except (
            Fail,
            InvalidArgument,
            InvalidGraph,
            InvalidProtobuf,
            NoSuchFile,
            RuntimeError,
        ) as err:
            raise DetectorError(
                f"model {where}: not an ONNX model onnxruntime can load ({str(err).strip()[:200]})"
            ) from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DetectorError(
                f"model {where}: expects one image input [1, 3, H, W], "
                f"has {[(i.name, i.shape) for i in inputs]}"
            )
        self._input = inputs[0].name
        _, _, h, w = inputs[0].shape
        meta = self._session.get_modelmeta().custom_metadata_map
        if input_size is None:
            input_size = _exported_size(meta)
        # a dynamic-shape export (``export(dynamic=True)``) names its H and W instead of
        # fixing them: it then sees each frame in its own aspect, the longer side resized
        # to ``input_size`` and padded only to the stride (windows: see detect_windows)
        self.any_input_size = not isinstance(h, int) and not isinstance(w, int)
        self.input_hw = (
            h if isinstance(h, int) else input_size,
            w if isinstance(w, int) else input_size,
        )
        self.input_size = input_size if self.any_input_size else max(self.input_hw)
        self.stride = _stride(meta)
        self.name = model.stem
        digest = hashlib.sha256(model.read_bytes()).hexdigest()[:12]
        self.version = meta.get("version", "") + "-" + digest
        self.version = self.version.lstrip("-")[:64]
        out_shape = self._session.get_outputs()[0].shape
        end_to_end = len(out_shape) == 3 and out_shape[2] == 6 and out_shape[1] != 6
        nc = None
        if (
            len(out_shape) == 3
            and not end_to_end
            and isinstance(out_shape[1], int)
            and out_shape[1] > 4
        ):
            nc = out_shape[1] - 4
        self.class_names = _names_from_metadata(meta, nc, where)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self._lock = threading.Lock()
        self.detect(np.zeros((*self.input_hw, 3), np.uint8))  # validates the output layout

    def exclusive(self) -> threading.Lock:
        """Hold it (``with detector.exclusive():``) and no inference of this detector
        runs: a new model's smoke test takes turns with the cameras' through it."""
        return self._lock

    @classmethod
    def from_config(cls, config: DetectorConfig, base: Path | None = None) -> OnnxYoloDetector:
        if config.model is None:
            raise DetectorError(
                "detector type onnx_yolo needs 'model' (an ultralytics ONNX export)"
            )
        return cls(
            resolve_model_path(config.model, base),
            config.input_size,
            config.score_threshold,
            config.nms_iou,
            config.threads,
        )

    def _letterboxed(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        """The frame as the network sees it: a fixed export's square, or (dynamic) the
        frame's own aspect with its longer side at ``input_size``, padded to the stride."""
        if not self.any_input_size:
            return letterbox(image, self.input_hw)
        h, w = image.shape[:2]
        scale = self.input_size / max(h, w)
        # the resized size as letterbox rounds it, so no extra stripe of padding appears
        size = (
            _stride_up(max(1, round(h * scale)), self.stride),
            _stride_up(max(1, round(w * scale)), self.stride),
        )
        return letterbox(image, size, scale)

    def _run(self, padded: np.ndarray) -> np.ndarray:
        blob = cv2.dnn.blobFromImage(padded, 1 / 255.0, swapRB=True)
        with self._lock:
            # onnxruntime is untyped: its outputs are numpy arrays, this model has one
            output: np.ndarray = self._session.run(None, {self._input: blob})[0]
        return output

    def forward(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        """Raw first output for one frame, with the letterbox scale and padding."""
        padded, scale, pad = self._letterboxed(image)
        return self._run(padded), scale, pad

    def detect(self, image: np.ndarray) -> Detections:
        out, scale, pad = self.forward(image)
        return self._decode(out, scale, pad, image.shape[:2])

    def detect_windows(self, image: np.ndarray, windows: Sequence[Rect]) -> list[Detections]:
        """Detections in each window (frame pixels) of ``image``, found by running the
        network on that part of the whole frame's input only. Each part is widened to
        the stride grid, so the network sees exactly the pixels, scale and grid it sees
        on the whole frame there; only what lies outside the part is missing."""
        if not self.any_input_size:
            raise ValueError(
                f"model {str(self.model_path)!r} has a fixed input size; "
                "export it with dynamic=True to detect in windows"
            )
        padded, scale, (px, py) = self._letterboxed(image)
        th, tw = padded.shape[:2]
        stride = self.stride
        found = []
        for x0, y0, x1, y1 in windows:
            ix0 = min(tw - stride, max(0, int(x0 * scale + px)) // stride * stride)
            iy0 = min(th - stride, max(0, int(y0 * scale + py)) // stride * stride)
            ix1 = min(tw, max(ix0 + stride, _stride_up(x1 * scale + px, stride)))
            iy1 = min(th, max(iy0 + stride, _stride_up(y1 * scale + py, stride)))
            out = self._run(padded[iy0:iy1, ix0:ix1])
            found.append(self._decode(out, scale, (px - ix0, py - iy0), image.shape[:2]))
        return found

    def _decode(
        self, out: np.ndarray, scale: float, pad: tuple[float, float], frame_hw: tuple[int, ...]
    ) -> Detections:
        """Raw output → boxes in frame pixels: the input pixel (x, y) is the frame pixel
        ((x − pad x) / scale, (y − pad y) / scale)."""
        px, py = pad
        nc = len(self.class_names)
        where = repr(str(self.model_path))
        if out.ndim == 3 and out.shape[0] == 1 and out.shape[2] == 6 and out.shape[1] != 4 + nc:
            rows = out[0]
            rows = rows[rows[:, 4] >= min(self.score_threshold, LOW_SCORE)]
            xyxy, scores, cls = rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64)
        elif out.ndim == 3 and out.shape[0] == 1 and out.shape[1] == 4 + nc:
            pred = out[0].T  # (N, 4 + nc)
            class_scores = pred[:, 4:]
            cls = class_scores.argmax(axis=1)
            scores = class_scores[np.arange(len(pred)), cls]
            keep = scores >= min(self.score_threshold, LOW_SCORE)
            pred, cls, scores = pred[keep], cls[keep], scores[keep]
            cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
            xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
            # per-class NMS in one call: shift each class's boxes far apart
            offset = cls[:, None].astype(np.float32) * 8192.0
            kept = nms(xyxy + offset, scores, self.nms_iou) if len(xyxy) else np.zeros(0, np.int64)
            xyxy, scores, cls = xyxy[kept], scores[kept], cls[kept]
        else:
            raise DetectorError(
                f"model {where}: unexpected output shape {tuple(out.shape)}; "
                f"expected [1, 4+{nc}, N] or [1, N, 6]"
            )
        if len(cls) and (cls.min() < 0 or cls.max() >= nc):
            raise DetectorError(f"model {where}: class id {int(cls.max())} outside its {nc} names")
        h, w = frame_hw[:2]
        border = np.array([px, py, px, py], np.float32)
        xyxy = (np.asarray(xyxy, np.float32).reshape(-1, 4) - border) / scale
        xyxy = np.clip(xyxy, 0, [w, h, w, h])
        return merge_relabelled(Detections(xyxy, scores, cls, self.class_names))
