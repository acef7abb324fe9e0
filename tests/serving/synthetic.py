"""Real ONNX classifier files built with onnx.helper (no torch), published like the trainer does.

Used where a test needs a model with a particular property (slow, wrong, many versions) and
does not care what it learned; the end-to-end tests use models the trainer really trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from serving.repository import VersionWriter


def classifier_graph(num_classes: int = 10, hidden: int = 0, depth: int = 0,
                     seed: int = 0, size: int = 28, multi_label: bool = False) -> onnx.ModelProto:
    """pixels [N,1,size,size] (0..255) -> probabilities, logits [N,num_classes].

    multi_label: independent sigmoids (a tagger) instead of one softmax.

    depth > 0 adds `depth` hidden MatMul+Tanh layers of width `hidden`: a slow model on demand.
    """
    rng = np.random.default_rng(seed)
    inputs = size * size
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
             helper.make_node("Mul", ["flat", "inv255"], ["x0"])]
    inits = [numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255")]
    current, width = "x0", inputs
    for i in range(depth):
        # the first layer maps pixels to `hidden`; the rest share one matrix to keep files small
        name = "w_in" if i == 0 else "w_rep"
        if i < 2:
            w = (rng.standard_normal((width, hidden)) / np.sqrt(width)).astype(np.float32)
            inits.append(numpy_helper.from_array(w, name))
        nodes += [helper.make_node("MatMul", [current, name], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"h{i}"])]
        current, width = f"h{i}", hidden
    w = (rng.standard_normal((width, num_classes)) / np.sqrt(width)).astype(np.float32)
    b = rng.standard_normal(num_classes).astype(np.float32)
    inits += [numpy_helper.from_array(w, "w_out"), numpy_helper.from_array(b, "b_out")]
    nodes += [helper.make_node("MatMul", [current, "w_out"], ["mm"]),
              helper.make_node("Add", ["mm", "b_out"], ["logits"]),
              helper.make_node("Sigmoid", ["logits"], ["probabilities"]) if multi_label
              else helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)]
    graph = helper.make_graph(
        nodes, "synthetic_classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                       ["batch", num_classes]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def classifier_manifest(num_classes: int = 10, size: int = 28) -> dict:
    return {
        "task": "classify",
        "graphs": {"model": "model.onnx"},
        "inputs": [{"name": "pixels", "dtype": "float32", "shape": [-1, 1, size, size]}],
        "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, num_classes]},
                    {"name": "logits", "dtype": "float32", "shape": [-1, num_classes]}],
        "labels": [f"class-{i}" for i in range(num_classes)],
        "preprocessing": {"kind": "image", "color": "grayscale", "channels": 1,
                          "height": size, "width": size, "layout": "NCHW",
                          "input_range": [0, 255]},
        "parity": {"max_abs_diff": 0.0, "tolerance": 1e-4},
        "metrics": {},
    }


def publish_classifier(repository: Path, name: str, **graph_options: int) -> Path:
    num_classes = graph_options.get("num_classes", 10)
    size = graph_options.get("size", 28)
    with VersionWriter(repository, name) as w:
        onnx.save(classifier_graph(**graph_options), w.path / "model.onnx")
        _, path = w.commit(classifier_manifest(num_classes, size))
    return path


def publish_tagger(repository: Path, name: str, thresholds: list[float], seed: int = 0) -> Path:
    with VersionWriter(repository, name) as w:
        onnx.save(classifier_graph(num_classes=len(thresholds), seed=seed, multi_label=True),
                  w.path / "model.onnx")
        manifest = {**classifier_manifest(len(thresholds)), "task": "tag",
                    "labels": [f"tag-{i}" for i in range(len(thresholds))],
                    "thresholds": thresholds}
        _, path = w.commit(manifest)
    return path
