"""Classify over REST (the Open Inference Protocol's HTTP form, binary tensors as
tritonclient.http sends them) side by side with the same call over gRPC (ModelInfer), on one
server, the same model and the same load generator (separate processes, bench.load), at
concurrency 1 and 32. Rounds are interleaved so both APIs see the same machine."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.load import generate_load
from bench.models import publish_classifier
from bench.serving_overhead import _free_port, running_server

CONCURRENCY = (1, 32)


def run(quick: bool = False, seconds: float | None = None, rounds: int | None = None) -> list[
        dict[str, Any]]:
    seconds = seconds or (1.5 if quick else 5.0)
    rounds = rounds or (1 if quick else 2)
    measured: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        publish_classifier(repository, "mlp")
        http_port = _free_port()
        with running_server(repository, "--http-port", str(http_port)) as target:
            rest_target = f"127.0.0.1:{http_port}"
            for _ in range(rounds):
                for concurrency in CONCURRENCY:
                    for api, where in (("oip", target), ("rest", rest_target)):
                        measured.setdefault((api, concurrency), []).append(
                            generate_load(where, "bench-mlp", api, concurrency, seconds))
    rows = []
    for concurrency in CONCURRENCY:
        grpc_best = _best(measured[("oip", concurrency)])
        rest_best = _best(measured[("rest", concurrency)])
        for api, best in (("grpc (OIP ModelInfer)", grpc_best), ("rest (OIP infer)", rest_best)):
            rows.append({"benchmark": "rest_vs_grpc", "api": api, "concurrency": concurrency,
                         **best,
                         "throughput_vs_grpc": round(best["throughput_rps"]
                                                     / grpc_best["throughput_rps"], 2)
                         if grpc_best["throughput_rps"] else "-",
                         "p50_vs_grpc_ms": round(best["p50_ms"] - grpc_best["p50_ms"], 3)})
    return rows


def _best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the most throughput: the least disturbed by the rest of the machine."""
    return max(results, key=lambda r: r["throughput_rps"])
