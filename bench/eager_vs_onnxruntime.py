"""In-process PyTorch eager vs onnxruntime on the same exported classifier, batch 1/32/256."""

from __future__ import annotations

import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from bench.timing import interleaved
from training.export.classifier_graph import INPUT_NAME, OUTPUT_NAMES, ClassifierGraph
from training.export.onnx_export import export_onnx
from training.models import build_classifier

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def exported_pair(arch: str, folder: Path) -> tuple[torch.nn.Module, ort.InferenceSession]:
    """The served graph as a torch module and as an onnxruntime session (weights don't matter
    for speed, so the model is freshly initialised rather than trained)."""
    torch.manual_seed(0)
    graph = ClassifierGraph(build_classifier(arch, (1, 28, 28), 10), MNIST_MEAN, MNIST_STD).eval()
    path = export_onnx(graph, (torch.zeros(2, 1, 28, 28),), folder / f"{arch}.onnx",
                       [INPUT_NAME], list(OUTPUT_NAMES), {INPUT_NAME: {0: "batch"}})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    return graph, ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def eager(graph: torch.nn.Module, x: torch.Tensor) -> object:
    with torch.inference_mode():
        return graph(x)


def run(quick: bool = False) -> list[dict[str, Any]]:
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("softmax", "mlp", "cnn"):
            graph, session = exported_pair(arch, Path(tmp))
            for batch in (1, 32, 256):
                x = np.random.default_rng(0).integers(0, 256, (batch, 1, 28, 28)) \
                    .astype(np.float32)
                repeats = (20 if quick else 100) if batch < 256 else (10 if quick else 40)
                t = interleaved({"eager": partial(eager, graph, torch.from_numpy(x)),
                                 "onnxruntime": partial(session.run, None, {INPUT_NAME: x})},
                                repeats)
                rows.append({
                    "benchmark": "eager_vs_onnxruntime", "model": f"mnist-{arch}",
                    "batch": batch, "eager_ms": round(t["eager"].median_ms, 4),
                    "onnxruntime_ms": round(t["onnxruntime"].median_ms, 4),
                    "speedup": round(t["eager"].median_ms / t["onnxruntime"].median_ms, 2)})
    return rows
