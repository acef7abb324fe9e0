"""Tagger models and their exported graph: sigmoid inside, per-label probabilities, parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from training.export.classifier_graph import ClassifierGraph, parity_batches
from training.export.onnx_export import export_onnx
from training.export.parity import ParityError, check_parity
from training.models.taggers import TaggerCNN, build_tagger, init_output_bias


@pytest.mark.parametrize("shape", [(1, 64, 64), (3, 32, 48), (3, 17, 23), (1, 16, 16)])
def test_cnn_takes_any_channels_and_size(shape: tuple[int, int, int]) -> None:
    model = build_tagger("cnn", shape, 7, hidden=[8], channels=[4, 8, 8, 8])
    assert isinstance(model, TaggerCNN)
    assert model(torch.zeros(2, *shape)).shape == (2, 7)


def test_mlp_option_and_errors() -> None:
    assert build_tagger("mlp", (3, 8, 8), 5, hidden=[16])(torch.zeros(4, 3, 8, 8)).shape == (4, 5)
    with pytest.raises(ValueError, match="too small"):
        build_tagger("cnn", (1, 8, 8), 3, channels=[4, 4, 4, 4])
    with pytest.raises(ValueError, match="unknown tagger architecture"):
        build_tagger("resnet", (1, 8, 8), 3)
    with pytest.raises(ValueError, match="head"):
        ClassifierGraph(build_tagger("mlp", (1, 8, 8), 3), [0.0], [1.0], head="relu")


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_output_bias_starts_at_the_label_frequencies(arch: str) -> None:
    model = build_tagger(arch, (1, 16, 16), 3, hidden=[8], channels=[4, 4])
    init_output_bias(model, np.array([0.5, 0.1, 0.0]))
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()  # leave only the bias: the prediction is the prior itself
        probs = torch.sigmoid(model.eval()(torch.randn(2, 1, 16, 16)))
    np.testing.assert_allclose(probs.numpy(), [[0.5, 0.1, 1e-3]] * 2, atol=1e-6)


@pytest.fixture(scope="module", params=["cnn", "mlp"])
def exported(request, tmp_path_factory) -> tuple[ClassifierGraph, Path, np.ndarray]:
    torch.manual_seed(0)
    model = build_tagger(request.param, (3, 20, 24), 6, hidden=[16], channels=[8, 8],
                         dropout=0.3)
    graph = ClassifierGraph(model, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3], head="sigmoid")
    # a few training steps so batch norm's running statistics are not the defaults
    x = torch.rand(32, 3, 20, 24) * 255
    graph.train()
    for _ in range(3):
        graph(x)
    graph.eval()
    path = tmp_path_factory.mktemp(f"tagger-{request.param}") / "model.onnx"
    export_onnx(graph, (torch.zeros(2, 3, 20, 24),), path, ["pixels"],
                ["probabilities", "logits"], {"pixels": {0: "batch"}})
    images = np.random.default_rng(0).integers(0, 256, (40, 3, 20, 24)).astype(np.uint8)
    return graph, path, images


def test_parity_and_sigmoid_probabilities(exported) -> None:
    graph, path, images = exported
    report = check_parity(graph, path, parity_batches(images))
    assert report.max_abs_diff <= 1e-4 and report.batch_sizes == [42, 1, 1, 1, 3]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, logits = session.run(None, {"pixels": images.astype(np.float32)})
    assert probs.shape == logits.shape == (40, 6)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert not np.allclose(probs.sum(1), 1, atol=1e-2)  # independent labels


def test_parity_gate_catches_a_softmax_graph(exported) -> None:
    graph, path, images = exported
    wrong = ClassifierGraph(graph.model, graph.mean.flatten().tolist(),
                            graph.std.flatten().tolist(), head="softmax").eval()
    with pytest.raises(ParityError, match="probabilities"):
        check_parity(wrong, path, parity_batches(images))
