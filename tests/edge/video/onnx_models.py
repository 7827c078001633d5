"""Small real ONNX graphs in the layouts ultralytics exports, for onnxruntime to run.

The graph computes ``predictions + 0 * mean(images)`` so the output is fixed, known
boxes, yet every call goes through a real onnxruntime session on the real input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(
    path: Path,
    predictions: np.ndarray,
    names: dict[int, str] | None,
    size: int = 320,
    opset: int = 17,
) -> Path:
    """Write an ONNX model with input ``images`` [1, 3, size, size] whose output0 is
    ``predictions`` (any shape); ``names`` goes into the metadata as ultralytics writes it."""
    pred = numpy_helper.from_array(predictions.astype(np.float32), "pred")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["pred", "z"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(predictions.shape))],
        initializer=[pred, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": repr(names), "version": "8.3.0", "stride": "32"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def v8_layout(
    boxes_cxcywh: list[tuple[float, float, float, float]],
    scores: list[list[float]],
    anchors: int = 8,
) -> np.ndarray:
    """[1, 4 + nc, anchors]: the first len(boxes) anchors hold the given boxes/scores."""
    nc = len(scores[0])
    out = np.zeros((1, 4 + nc, anchors), np.float32)
    for i, (box, sc) in enumerate(zip(boxes_cxcywh, scores, strict=True)):
        out[0, :4, i] = box
        out[0, 4:, i] = sc
    return out


def end_to_end_layout(
    rows: list[tuple[float, float, float, float, float, int]], n: int = 300
) -> np.ndarray:
    """[1, n, 6]: x1, y1, x2, y2, score, class; unused rows score 0."""
    out = np.zeros((1, n, 6), np.float32)
    for i, row in enumerate(rows):
        out[0, i] = row
    return out


def build_centre_finder(
    path: Path, name: str = "person", box: float = 20.0, score: float = 0.9, stride: int = 32
) -> Path:
    """A dynamic-shape model (input [1, 3, 'height', 'width'], as ``export(dynamic=True)``
    writes) that "detects" one ``name`` of ``box`` × ``box`` input pixels at the centre of
    whatever it is shown: output [1, 5, 1] = (W/2, H/2, box, box, score). Where the
    detection lands in a frame tells which crop, at which scale, the model really saw."""
    const: dict[str, np.ndarray] = {
        "two": np.array([2.0], np.float32),
        "size": np.array([box], np.float32),
        "score": np.array([score], np.float32),
        "hw_idx": np.array([2, 3], np.int64),
        "one_one_one": np.array([1, 1, 1], np.int64),
    }
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Gather", ["shape", "hw_idx"], ["hw"], axis=0),
        helper.make_node("Cast", ["hw"], ["hw_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["hw_f", "two"], ["half"]),  # (H/2, W/2)
        helper.make_node("Split", ["half"], ["cy", "cx"], axis=0, num_outputs=2),
        # keep the pixels in the graph, as a real model would read them
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["score", "z"], ["s"]),
        helper.make_node("Concat", ["cx", "cy", "size", "size", "s"], ["flat"], axis=0),
        helper.make_node("Reshape", ["flat", "out_shape"], ["output0"]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in const.items() if k != "one_one_one"]
    inits += [
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([1, 5, 1], np.int64), "out_shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "centre-finder",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": repr({0: name}), "stride": str(stride)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
