"""The server over loopback against in-process onnxruntime on the same inputs (concurrency 1).

A third column, interleaved with the other two, is a grpc.health.v1 Check on the same server:
a call that runs no model and no project code, i.e. the part of the overhead that is Python
gRPC itself (client and server) on this machine.
"""

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

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.models import publish_classifier
from serving.client import Client
from serving.runners import load_runner
from serving.runtime.session import SessionConfig
from training.export.classifier_graph import INPUT_NAME
from training.timing import interleaved

ROOT = Path(__file__).resolve().parents[1]


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
         *([] if "--http-port" in args else ["--http-port", "0"]), *args], cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
            publish_classifier(repository, arch)
        with running_server(repository) as target, Client(target) as client, \
                grpc.insecure_channel(target) as channel:
            health = partial(health_pb2_grpc.HealthStub(channel).Check,
                             health_pb2.HealthCheckRequest(service=""))
            for arch in ("mlp", "cnn"):
                model = f"bench-{arch}"
                # the server's own session options (the runner's, with its thread spinning),
                # so the difference is the serving alone; a session that spins here would
                # also take a core from the server between calls
                session = load_runner(repository / model / "1", SessionConfig()) \
                    .sessions["model"]
                for batch in (1, 32):
                    x = np.random.default_rng(1).integers(0, 256, (batch, 1, 28, 28)) \
                        .astype(np.uint8)
                    served = partial(client.classify, model, pixels=x, top_k=1)
                    local = partial(session.run, ["probabilities"],
                                    {INPUT_NAME: x.astype(np.float32)})
                    t = interleaved({"server": served, "in_process": local, "health": health},
                                    100 if quick else 300)
                    rows.append({
                        "benchmark": "server_vs_in_process", "model": model, "batch": batch,
                        "api": "smallserve.v1 Classify",
                        "in_process_p50_ms": round(t["in_process"].median_ms, 4),
                        "server_p50_ms": round(t["server"].median_ms, 4),
                        "server_p99_ms": round(t["server"].percentile_ms(99), 4),
                        "overhead_p50_ms": round(t["server"].median_ms
                                                 - t["in_process"].median_ms, 4),
                        "grpc_floor_p50_ms": round(t["health"].median_ms, 4)})
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
