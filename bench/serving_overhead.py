"""The server over loopback against in-process onnxruntime on the same inputs (concurrency 1)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from bench.eager_vs_onnxruntime import MNIST_MEAN, MNIST_STD
from bench.timing import interleaved
from serving.client import Client
from serving.repository import VersionWriter
from training.export.classifier_graph import INPUT_NAME, OUTPUT_NAMES, ClassifierGraph
from training.export.onnx_export import export_onnx
from training.models import build_classifier

ROOT = Path(__file__).resolve().parents[1]


def publish_untrained(repository: Path, arch: str) -> Path:
    torch.manual_seed(0)
    graph = ClassifierGraph(build_classifier(arch, (1, 28, 28), 10), MNIST_MEAN, MNIST_STD).eval()
    with VersionWriter(repository, f"bench-{arch}") as w:
        export_onnx(graph, (torch.zeros(2, 1, 28, 28),), w.path / "model.onnx", [INPUT_NAME],
                    list(OUTPUT_NAMES), {INPUT_NAME: {0: "batch"}})
        _, path = w.commit({
            "task": "classify", "graphs": {"model": "model.onnx"},
            "inputs": [{"name": INPUT_NAME, "dtype": "float32", "shape": [-1, 1, 28, 28]}],
            "outputs": [{"name": n, "dtype": "float32", "shape": [-1, 10]}
                        for n in OUTPUT_NAMES],
            "labels": [str(i) for i in range(10)],
            "preprocessing": {"kind": "image", "color": "grayscale", "channels": 1,
                              "height": 28, "width": 28},
            "parity": {"max_abs_diff": 0.0, "note": "benchmark model, not checked"},
            "metrics": {}})
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(repository: Path, *args: str) -> Iterator[str]:
    """python -m serving on a free loopback port; yields its target once models are ready."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", "--repository", str(repository), "--host",
         "127.0.0.1", "--port", str(port), "--log-level", "WARNING", "--metrics-port", "0",
         *args], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    target = f"127.0.0.1:{port}"
    try:
        with Client(target) as client:
            _wait_ready(client)
        yield target
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        for arch in ("mlp", "cnn"):
            publish_untrained(repository, arch)
        with running_server(repository) as target, Client(target) as client:
            for arch in ("mlp", "cnn"):
                model = f"bench-{arch}"
                session = ort.InferenceSession(str(repository / model / "1" / "model.onnx"),
                                               providers=["CPUExecutionProvider"])
                for batch in (1, 32):
                    x = np.random.default_rng(1).integers(0, 256, (batch, 1, 28, 28)) \
                        .astype(np.uint8)
                    served = partial(client.classify, model, pixels=x, top_k=1)
                    local = partial(session.run, ["probabilities"],
                                    {INPUT_NAME: x.astype(np.float32)})
                    t = interleaved({"server": served, "in_process": local},
                                    50 if quick else 300)
                    rows.append({
                        "benchmark": "server_vs_in_process", "model": model, "batch": batch,
                        "api": "smallserve.v1 Classify",
                        "in_process_p50_ms": round(t["in_process"].median_ms, 4),
                        "server_p50_ms": round(t["server"].median_ms, 4),
                        "server_p99_ms": round(t["server"].percentile_ms(99), 4),
                        "overhead_p50_ms": round(t["server"].median_ms
                                                 - t["in_process"].median_ms, 4)})
    return rows


def _wait_ready(client: Client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.list_models():
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)
