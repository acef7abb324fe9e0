"""The server under concurrent load: throughput and p50/p99 at concurrency 1 / 8 / 32 / 128,
without dynamic batching, with it at its defaults, and with it set for throughput (a 5 ms queue
delay), through both APIs, in one and in two processes.

Load comes from separate processes (bench.load). A reference row per server bounds what
batching can win: `health` is a gRPC call that runs no model (the per-call floor of Python gRPC
on this machine), and ceiling_vs_no_batching is its throughput over the no-batching
throughput, i.e. the gain of a batcher that made the model free. rows_per_run is the mean
number of rows per onnxruntime run, from the server's own statistics (ModelStatistics): above 1
means concurrent calls were merged.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from bench.load import generate_load
from bench.models import publish_classifier
from bench.serving_overhead import running_server
from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.inference import grpc_service_pb2_grpc as oip_grpc
from serving.client import Client

CONCURRENCY = (1, 8, 32, 128)
MODELS = ("mlp", "cnn")


def plan(quick: bool) -> list[tuple[int, str, str, int]]:
    """(processes, model, api, concurrency) to measure, each with batching off and on."""
    if not quick:
        return [(p, m, a, c) for p in (1, 2) for m in MODELS for a in ("smallserve", "oip")
                for c in CONCURRENCY]
    return ([(1, "mlp", "smallserve", c) for c in CONCURRENCY]
            + [(1, "mlp", "oip", c) for c in (1, 32)]
            + [(1, "cnn", "smallserve", c) for c in (1, 32)]
            + [(2, m, "smallserve", 32) for m in MODELS])


class Statistics:
    """Runs and rows of a model from the server's ModelStatistics (one worker's, when there
    are several: the channel stays on one connection)."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = oip_grpc.GRPCInferenceServiceStub(self.channel)

    def counts(self, model: str) -> tuple[int, int]:
        stats = self.stub.ModelStatistics(oip.ModelStatisticsRequest(name=model)).model_stats
        return sum(s.inference_count for s in stats), sum(s.execution_count for s in stats)


# server flags per batching column: the defaults (no queue delay: a lone call never waits),
# and a throughput setting, where a call waits up to 5 ms for others (up to 32 rows)
BATCHING = {"off": ["--batching", "off"], "on": ["--batching", "on"],
            "on, 5 ms delay": ["--batching", "on", "--batch-max-delay-us", "5000",
                               "--batch-max-size", "32"]}


@contextmanager
def server(repository: Path, processes: int, batching: str) -> Iterator[str]:
    with running_server(repository, *BATCHING[batching], "--processes",
                        str(processes)) as target:
        if processes > 1:
            _wait_all_workers(target)
        yield target


def _wait_all_workers(target: str, tries: int = 40) -> None:
    """Fresh connections land on any worker: wait until several in a row find models."""
    ready = 0
    while ready < 6 and tries:
        tries -= 1
        try:
            with Client(target, timeout=2) as c:
                ready = ready + 1 if c.list_models() else 0
        except Exception:
            ready = 0
            time.sleep(0.3)


def run(quick: bool = False, todo: list[tuple[int, str, str, int]] | None = None,
        seconds: float | None = None) -> list[dict[str, Any]]:
    """todo: (processes, model, api, concurrency) to measure (default: plan(quick))."""
    seconds = seconds or (1.5 if quick else 5.0)
    todo = todo or plan(quick)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        for arch in sorted({m for _, m, _, _ in todo}):
            publish_classifier(repository, arch)
        for processes in sorted({p for p, *_ in todo}):
            for batching in BATCHING:
                with server(repository, processes, batching) as target:
                    stats = Statistics(target)
                    if batching == "on":
                        rows.append(_measure(target, stats, processes, "-", "health", 32,
                                             "-", seconds))
                    for p, model, api, c in todo:
                        if p == processes:
                            rows.append(_measure(target, stats, p, f"bench-{model}", api, c,
                                                 batching, seconds))
                    stats.channel.close()
    base = {(r["processes"], r["model"], r["api"], r["concurrency"]): r["throughput_rps"]
            for r in rows if r["batching"] == "off"}
    floor = {r["processes"]: r["throughput_rps"] for r in rows if r["api"] == "health"}
    for r in rows:
        if r["batching"] not in ("off", "-"):
            off = base.get((r["processes"], r["model"], r["api"], r["concurrency"]))
            r["vs_no_batching"] = round(r["throughput_rps"] / off, 2) if off else "-"
            # what batching could give at best: calls that cost no model time at all
            r["ceiling_vs_no_batching"] = round(floor[r["processes"]] / off, 2) \
                if off and r["processes"] in floor else "-"
    return rows


def _measure(target: str, stats: Statistics, processes: int, model: str, api: str,
             concurrency: int, batching: str, seconds: float) -> dict[str, Any]:
    before = stats.counts(model) if api != "health" else (0, 0)
    result = generate_load(target, model, api, concurrency, seconds)
    after = stats.counts(model) if api != "health" else (0, 0)
    rows, runs = after[0] - before[0], after[1] - before[1]
    return {"benchmark": "server_throughput", "processes": processes, "model": model,
            "api": api, "batching": batching, "concurrency": concurrency, **result,
            "rows_per_run": round(rows / runs, 2) if runs else "-"}
