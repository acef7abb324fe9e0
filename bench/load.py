"""Closed-loop load from a separate process: C concurrent callers for T seconds.

Runs as `python -m bench.load TARGET MODEL API CONCURRENCY SECONDS` and prints one JSON line,
so the load generator never shares a core's GIL with the server it measures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
import numpy as np

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.inference import grpc_service_pb2_grpc as oip_grpc
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as api_grpc
from serving.client.messages import classify_request


def request_maker(api: str, model: str, channel: grpc.aio.Channel):
    pixels = np.random.default_rng(0).integers(0, 256, (1, 28, 28)).astype(np.uint8)
    if api == "smallserve":
        stub = api_grpc.ModelServiceStub(channel)
        request = classify_request(model, pixels=pixels, top_k=1)
        return lambda: stub.Classify(request, timeout=30)
    stub = oip_grpc.GRPCInferenceServiceStub(channel)
    request = oip.ModelInferRequest(model_name=model)
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(pixels.astype(np.float32).tobytes())
    return lambda: stub.ModelInfer(request, timeout=30)


async def generate(target: str, model: str, api: str, concurrency: int,
                   seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        call = request_maker(api, model, channel)
        for _ in range(5):
            await call()  # connection and server warm-up, not measured
        stop = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                start = time.perf_counter()
                try:
                    await call()
                    latencies.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError:
                    errors += 1

        begin = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - begin
    ordered = sorted(latencies)
    return {"requests": len(ordered), "errors": errors,
            "throughput_rps": round(len(ordered) / elapsed, 1),
            "p50_ms": round(ordered[len(ordered) // 2] * 1e3, 3) if ordered else 0.0,
            "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1e3, 3) if ordered else 0.0}


if __name__ == "__main__":
    target, model, api, concurrency, seconds = sys.argv[1:6]
    print(json.dumps(asyncio.run(generate(target, model, api, int(concurrency),
                                          float(seconds)))))
