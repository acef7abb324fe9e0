"""A mixed workload against a running server, from a process of its own:

    python -m tests.serving.soak --target HOST:PORT --model NAME --server-pid PID \
        [--seconds 60] [--concurrency 64] [--warmup 10]

Callers pick at random among valid Classify and OIP ModelInfer calls, metadata calls, and
invalid calls whose status is known in advance; any other outcome is an unexpected error.
The server's resident memory is read from /proc after the warm-up and at the end. Prints one
JSON object: calls, unexpected errors (with examples), latency percentiles, RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.inference import grpc_service_pb2_grpc as oip_grpc
from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.client.messages import classify_request

OK, INVALID, NOT_FOUND = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                          grpc.StatusCode.NOT_FOUND)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


Call = tuple[str, int, Callable[[], Awaitable[Any]], grpc.StatusCode]


def workload(channel: grpc.aio.Channel, model: str) -> list[Call]:
    """(kind, weight, call, expected status)."""
    api, infer = pb_grpc.ModelServiceStub(channel), oip_grpc.GRPCInferenceServiceStub(channel)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    classify = [classify_request(model, pixels=images[:n], top_k=3) for n in (1, 2, 4)]
    good_infer = oip.ModelInferRequest(model_name=model)
    good_infer.inputs.add(name="pixels", datatype="UINT8", shape=[2, 1, 28, 28])
    good_infer.raw_input_contents.append(images[:2].astype(np.uint8).tobytes())
    short_infer = oip.ModelInferRequest()
    short_infer.CopyFrom(good_infer)
    short_infer.raw_input_contents[0] = good_infer.raw_input_contents[0][:-4]
    wrong_shape = classify_request(model, pixels=np.zeros((1, 27, 28), np.uint8))
    ref = pb.ModelRef(name=model)
    return [
        ("classify", 40, lambda: api.Classify(random.choice(classify), timeout=30), OK),
        ("infer", 25, lambda: infer.ModelInfer(good_infer, timeout=30), OK),
        ("metadata", 4, lambda: api.GetModelMetadata(pb.GetModelMetadataRequest(model=ref),
                                                     timeout=30), OK),
        ("list", 2, lambda: api.ListModels(pb.ListModelsRequest(), timeout=30), OK),
        ("oip-metadata", 2, lambda: infer.ModelMetadata(oip.ModelMetadataRequest(name=model),
                                                        timeout=30), OK),
        ("statistics", 2, lambda: infer.ModelStatistics(
            oip.ModelStatisticsRequest(name=model), timeout=30), OK),
        ("classify-invalid", 10, lambda: api.Classify(wrong_shape, timeout=30), INVALID),
        ("infer-invalid", 10, lambda: infer.ModelInfer(short_infer, timeout=30), INVALID),
        ("unknown-model", 5, lambda: infer.ModelMetadata(
            oip.ModelMetadataRequest(name="no-such-model"), timeout=30), NOT_FOUND),
    ]


async def soak(target: str, model: str, server_pid: int, seconds: float, concurrency: int,
               warmup: float) -> dict[str, Any]:
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    examples: list[str] = []
    rss: dict[str, int] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        calls = workload(channel, model)
        weights = [w for _, w, _, _ in calls]
        begin = time.perf_counter()
        measuring_from, stop = begin + warmup, begin + warmup + seconds

        async def caller(seed: int) -> None:
            rng = random.Random(seed)
            while (now := time.perf_counter()) < stop:
                kind, _, call, expected = rng.choices(calls, weights)[0]
                try:
                    await call()
                    code, details = OK, ""
                except grpc.aio.AioRpcError as e:
                    code, details = e.code(), e.details()
                if now < measuring_from:
                    continue
                latencies.append(time.perf_counter() - now)
                kinds[kind] += 1
                if code != expected:
                    unexpected[f"{kind}: {code.name}"] += 1
                    if len(examples) < 5:
                        examples.append(f"{kind}: {code.name}: {details}")

        async def sample_memory() -> None:
            await asyncio.sleep(warmup)
            rss["before_kb"] = rss_kb(server_pid)
            await asyncio.sleep(max(0.0, stop - time.perf_counter()))
            rss["after_kb"] = rss_kb(server_pid)

        await asyncio.gather(sample_memory(), *(caller(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - measuring_from
    ordered = sorted(latencies)

    def percentile(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3, 2) \
            if ordered else 0.0

    return {"seconds": round(elapsed, 1), "concurrency": concurrency, "calls": len(ordered),
            "calls_per_second": round(len(ordered) / elapsed, 1), "by_kind": dict(kinds),
            "unexpected": sum(unexpected.values()), "unexpected_by_kind": dict(unexpected),
            "examples": examples, "p50_ms": percentile(0.50), "p99_ms": percentile(0.99),
            "max_ms": round(ordered[-1] * 1e3, 2) if ordered else 0.0,
            "rss_before_kb": rss["before_kb"], "rss_after_kb": rss["after_kb"],
            "rss_growth": round(rss["after_kb"] / rss["before_kb"] - 1, 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--seconds", type=float, default=60.0, help="measured time, after warm-up")
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args()
    print(json.dumps(asyncio.run(soak(args.target, args.model, args.server_pid, args.seconds,
                                      args.concurrency, args.warmup))))


if __name__ == "__main__":
    main()
