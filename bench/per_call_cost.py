"""The server's own per-call cost, against the anchors side by side: a bare grpc.aio server that
parses each request and answers canned bytes (the floor: bench.grpc_floor) and, where the
nvidia-pytriton wheel's tritonserver runs, Triton serving the python-backend form of the same
repository (dynamic batching, the same ONNX file in onnxruntime). Between the two, the same
bare server running the model once per call on its loop ("grpc floor + model", on uvloop as
this server): what any Python server that runs the model per call can reach, so `vs_model_floor`
is the share of the time our own Python costs beside the model's run.

The same closed-loop load generator (bench.load, separate processes) drives each server in
turn, rounds interleaved, at concurrency 1, 8 and 32, for Classify of one MNIST digit through
both APIs: smallserve.v1 Classify and Open Inference Protocol ModelInfer (Triton: ModelInfer
only). Rows give calls/s, p50, p99, the throughput as a share of the floor's and of Triton's,
and p50 above the floor's. The best round of each cell counts: the least disturbed by the rest
of a shared machine.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from bench import models
from bench.load import generate_load, image_call
from bench.serving_overhead import running_server
from serving.triton.wheel import LocalTriton, ensure_env, free_port

CONCURRENCY = (1, 8, 32)
APIS = ("smallserve", "oip")
THREADS = 1  # onnxruntime threads per operator, in this server and in Triton's
ROOT = Path(__file__).resolve().parents[1]


def run(quick: bool = False, seconds: float | None = None, rounds: int | None = None,
        triton: bool = True) -> list[dict[str, Any]]:
    seconds = seconds or (2.0 if quick else 5.0)
    rounds = rounds or (1 if quick else 3)
    measured: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "models"
        version = models.publish_classifier(repository, "mlp")
        model = version.parent.name
        with running_server(repository, "--intra-op-threads", str(THREADS)) as ours, \
                bare_floor(ours, model, Path(tmp), "asyncio") as floor, \
                bare_floor(ours, model, Path(tmp), "uvloop") as uvloop_floor, \
                bare_floor(ours, model, Path(tmp), "uvloop", version / "model.onnx") as \
                model_floor, \
                triton_anchor(repository, Path(tmp), triton) as (triton_target, skipped):
            # the floor on asyncio's loop (the anchor), and on uvloop, which this server runs
            # on by default (--event-loop auto): what the loop alone changes
            servers = {"smallserve": ours, "grpc floor": floor, "grpc floor uvloop": uvloop_floor,
                       "grpc floor + model": model_floor}
            if triton_target:
                servers["triton"] = triton_target
            for _ in range(rounds):
                for concurrency in CONCURRENCY:
                    for api in APIS:
                        for server, target in servers.items():
                            if server == "triton" and api != "oip":
                                continue  # Triton speaks the Open Inference Protocol only
                            measured.setdefault((api, concurrency, server), []).append(
                                generate_load(target, model, api, concurrency, seconds))
    rows = [_row(measured, api, concurrency, server)
            for concurrency in CONCURRENCY for api in APIS for server in servers
            if (api, concurrency, server) in measured]
    if skipped:
        rows.append({"benchmark": "per_call_cost", "server": "triton", "skipped": skipped})
    return rows


def _row(measured: dict[tuple[str, int, str], list[dict[str, Any]]], api: str,
         concurrency: int, server: str) -> dict[str, Any]:
    best = _best(measured[(api, concurrency, server)])
    floor = _best(measured[(api, concurrency, "grpc floor")])
    model_floor = _best(measured[(api, concurrency, "grpc floor + model")])
    triton = measured.get(("oip", concurrency, "triton"))
    row = {"benchmark": "per_call_cost", "api": api, "concurrency": concurrency,
           "server": server, "calls_per_s": best["throughput_rps"], "p50_ms": best["p50_ms"],
           "p99_ms": best["p99_ms"], "errors": best["errors"],
           "vs_floor": _ratio(best["throughput_rps"], floor["throughput_rps"]),
           "vs_model_floor": _ratio(best["throughput_rps"], model_floor["throughput_rps"]),
           "p50_above_floor_ms": round(best["p50_ms"] - floor["p50_ms"], 3)}
    if triton:
        row["vs_triton"] = _ratio(best["throughput_rps"], _best(triton)["throughput_rps"])
    return row


def _ratio(a: float, b: float) -> float | str:
    return round(a / b, 2) if b else "-"


def _best(results: list[dict[str, Any]]) -> dict[str, Any]:
    return max(results, key=lambda r: r["throughput_rps"])


@contextmanager
def bare_floor(ours: str, model: str, workdir: Path, loop: str,
               onnx: Path | None = None) -> Iterator[str]:
    """bench.grpc_floor on `loop`, answering with this server's own answers to the load's
    calls (after running `onnx` on each call's pixels, when given)."""
    answers = workdir / "answers"
    answers.mkdir(exist_ok=True)
    with grpc.insecure_channel(ours) as channel:
        for api in APIS:
            method, request = image_call(api, model)
            call = channel.unary_unary(method,
                                       request_serializer=type(request).SerializeToString)
            (answers / f"{method.rsplit('/', 1)[1]}.bin").write_bytes(call(request, timeout=30))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.grpc_floor", str(port),
                                str(answers), loop, *([str(onnx)] if onnx else [])],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        if process.stdout is None or process.stdout.readline().strip() != "ready":
            raise RuntimeError("bench.grpc_floor did not start")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def triton_anchor(repository: Path, workdir: Path,
                  wanted: bool) -> Iterator[tuple[str | None, str | None]]:
    """(Triton's gRPC target, None), or (None, why it is not measured)."""
    problem = ensure_env() if wanted else "not asked for"
    if problem is not None:
        yield None, problem
        return
    triton_repository = workdir / "triton"
    result = subprocess.run([sys.executable, "-m", "serving.triton", "export", "--repository",
                             str(repository), "--out", str(triton_repository), "--form",
                             "python", "--intra-op-threads", str(THREADS),
                             "--smallserve-path", str(ROOT)],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"python -m serving.triton export failed:\n{result.stderr}")
    with LocalTriton(triton_repository, workdir) as triton:
        yield triton.grpc_target, None
