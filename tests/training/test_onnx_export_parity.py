from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from training.export.classifier_graph import ClassifierGraph, parity_batches
from training.export.onnx_export import export_onnx
from training.export.parity import ParityError, check_parity
from training.models import build_classifier


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[nn.Module, Path, np.ndarray]:
    torch.manual_seed(0)
    model = build_classifier("cnn", (1, 12, 12), 4, hidden=[16], dropout=0.5)
    graph = ClassifierGraph(model, [0.2], [0.3], temperature=1.7).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    images = np.random.default_rng(0).integers(0, 256, (20, 1, 12, 12)).astype(np.uint8)
    export_onnx(graph, (torch.from_numpy(images[:2].astype(np.float32)),), path,
                ["pixels"], ["probabilities", "logits"], {"pixels": {0: "batch"}})
    return graph, path, images


def test_graph_is_valid_single_file_with_dynamic_batch(exported) -> None:
    _, path, _ = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert not list(path.parent.glob("*.data"))  # weights inside the file
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 12, 12]
    assert [o.name for o in model.graph.output] == ["probabilities", "logits"]


def test_parity_within_tolerance_on_several_batch_sizes(exported) -> None:
    graph, path, images = exported
    report = check_parity(graph, path, parity_batches(images, max_samples=16))
    assert report.max_abs_diff <= 1e-4
    assert report.batch_sizes == [18, 1, 1, 1, 3]
    assert set(report.per_output) == {"probabilities", "logits"}


def test_probabilities_are_tempered_softmax_and_sum_to_one(exported) -> None:
    _, path, images = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    extremes = np.stack([np.zeros((1, 12, 12)), np.full((1, 12, 12), 255.0)])
    x = np.concatenate([images.astype(np.float32), extremes.astype(np.float32)])
    probs, logits = session.run(None, {"pixels": x})
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    z = logits / 1.7
    expected = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), atol=1e-6)


def test_graph_normalises_raw_pixels(exported) -> None:
    graph, _, images = exported
    x = torch.from_numpy(images[:3].astype(np.float32))
    _, logits = graph(x)
    torch.testing.assert_close(logits, graph.model((x / 255 - 0.2) / 0.3))


def test_parity_gate_fails_when_outputs_differ(exported) -> None:
    graph, path, images = exported
    altered = ClassifierGraph(graph.model, [0.2], [0.3], temperature=1.0).eval()
    with pytest.raises(ParityError, match="differs from PyTorch"):
        check_parity(altered, path, parity_batches(images))
    with pytest.raises(ParityError):
        check_parity(graph, path, parity_batches(images), tolerance=-1.0)
