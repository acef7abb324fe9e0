"""Closed-loop load from separate processes: C concurrent callers for T seconds.

`python -m bench.load TARGET MODEL API CONCURRENCY SECONDS [CHANNELS]` (TARGET the HTTP
port's host:port for the `rest` API) runs the callers on
CHANNELS connections of their own (so the kernel can spread them over `--processes` workers)
and prints one JSON line with every latency. `generate_load` runs several such processes and
merges them, so the load never shares a GIL with the server it measures, and one Python client
process is not the ceiling of what is measured.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.inference import grpc_service_pb2_grpc as oip_grpc
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as api_grpc
from serving.client.messages import classify_request, translate_request
from serving.oip.tensors import encode_bytes_tensor

APIS = ("smallserve", "oip", "rest", "health", "translate", "translate-mixed", "translate-short",
        "translate-flood", "oip-translate", "oip-translate-rows")
# translate: one made-up sentence per call (unknown words are still pieces to encode), greedy,
# this many steps: the bench models never end a sentence early (bench.models)
TRANSLATE_TEXT = "kelo mira tansu ferbo lin adaro"
TRANSLATE_STEPS = 20
# (text, beam, steps): one sentence greedy; one word greedy (a short call); the longest source
# at the widest beam (a hostile one)
TRANSLATE_CALLS = {"translate": (TRANSLATE_TEXT, 1, TRANSLATE_STEPS),
                   "translate-short": ("kelo", 1, 4),
                   "translate-flood": (" ".join([TRANSLATE_TEXT] * 16), 64, 200)}
# translate-mixed: one sentence per call as `translate`, but of lengths that differ from call to
# call as a user's sentences do (1-11 words in, 5-35 steps out, 20 steps on average as
# `translate`), taken in turn
TRANSLATE_MIXED_STEPS = (5, 35, 12, 28, 20, 8, 32, 16, 24)
# the `translate` call as an Open Inference Protocol ModelInfer: the text tensor as this server
# takes it ([1]) or as Triton's form of the model does ([1, 1]: one text per batch row)
OIP_TRANSLATE_SHAPES = {"oip-translate": [1], "oip-translate-rows": [1, 1]}
ROOT = Path(__file__).resolve().parents[1]
CLASSIFY_METHOD = "/smallserve.v1.ModelService/Classify"
MODEL_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def request_maker(api: str, model: str, channel: grpc.aio.Channel) -> Any:
    """A zero-argument coroutine factory for one call of the API."""
    if api == "health":  # no model at all: the floor of one call through this server
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="")
        return lambda: health.Check(check, timeout=30)
    if api in TRANSLATE_CALLS:
        translator = api_grpc.ModelServiceStub(channel)
        text, beam, steps = TRANSLATE_CALLS[api]
        sentence = translate_request(model, [text], 0, beam, steps)
        return lambda: translator.Translate(sentence, timeout=300)
    if api == "translate-mixed":
        translator = api_grpc.ModelServiceStub(channel)
        words = TRANSLATE_TEXT.split() * 6
        sentences = itertools.cycle([translate_request(model, [" ".join(words[:steps // 3])], 0,
                                                       1, steps)
                                     for steps in TRANSLATE_MIXED_STEPS])
        return lambda: translator.Translate(next(sentences), timeout=300)
    if api in OIP_TRANSLATE_SHAPES:
        return oip_translate_maker(model, channel, OIP_TRANSLATE_SHAPES[api])
    method, request = image_call(api, model)
    # the answer is read as bytes, not parsed: the client's own work stays off the figures
    call = channel.unary_unary(method, request_serializer=type(request).SerializeToString)
    return lambda: call(request, timeout=30)


def image_call(api: str, model: str) -> tuple[str, Any]:
    """(method path, request) of one one-digit classify call through `smallserve` or `oip`."""
    pixels = np.random.default_rng(0).integers(0, 256, (1, 28, 28)).astype(np.uint8)
    if api == "smallserve":
        return CLASSIFY_METHOD, classify_request(model, pixels=pixels, top_k=1)
    request = oip.ModelInferRequest(model_name=model)
    request.inputs.add(name="pixels", datatype="UINT8", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(pixels.tobytes())
    return MODEL_INFER_METHOD, request


def oip_translate_maker(model: str, channel: grpc.aio.Channel, shape: list[int]) -> Any:
    stub = oip_grpc.GRPCInferenceServiceStub(channel)
    request = oip.ModelInferRequest(model_name=model)
    request.inputs.add(name="text", datatype="BYTES", shape=shape)
    request.raw_input_contents.append(encode_bytes_tensor(np.array([TRANSLATE_TEXT.encode()],
                                                                   dtype=object)))
    request.parameters["beam_size"].int64_param = 1
    request.parameters["max_length"].int64_param = TRANSLATE_STEPS
    return lambda: stub.ModelInfer(request, timeout=60)


def rest_request_maker(model: str, session: aiohttp.ClientSession, url: str) -> Any:
    """One REST ModelInfer call as tritonclient.http sends it: a JSON header, then the pixels
    as binary tensor data; the probabilities come back binary too."""
    pixels = np.random.default_rng(0).integers(0, 256, (1, 1, 28, 28)).astype(np.uint8)
    head = json.dumps({"inputs": [{"name": "pixels", "datatype": "UINT8",
                                   "shape": [1, 1, 28, 28],
                                   "parameters": {"binary_data_size": pixels.nbytes}}],
                       "outputs": [{"name": "probabilities",
                                    "parameters": {"binary_data": True}}]}).encode()
    body = head + pixels.tobytes()
    headers = {"Inference-Header-Content-Length": str(len(head)),
               "Content-Type": "application/octet-stream"}
    endpoint = f"http://{url}/v2/models/{model}/infer"

    async def call() -> None:
        async with session.post(endpoint, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise grpc.aio.AioRpcError(grpc.StatusCode.UNKNOWN, None, None,
                                           f"HTTP {response.status}")
    return call


async def generate(target: str, model: str, api: str, concurrency: int, seconds: float,
                   channels: int = 1) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    # a local subchannel pool each: channels to one target would otherwise share a connection
    opened = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
              for _ in range(channels if api != "rest" else 0)]
    # REST: one HTTP client session per channel, each keeping its connections alive
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                for _ in range(channels if api == "rest" else 0)]
    calls = [request_maker(api, model, c) for c in opened] + \
        [rest_request_maker(model, s, target) for s in sessions]
    try:
        for call in calls:
            for _ in range(3):
                await call()  # connection and server warm-up, not measured
        stop = time.perf_counter() + seconds

        async def caller(call: Any) -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                start = time.perf_counter()
                try:
                    await call()
                    latencies.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError:
                    errors += 1

        begin = time.perf_counter()
        await asyncio.gather(*(caller(calls[i % channels]) for i in range(concurrency)))
        elapsed = time.perf_counter() - begin
    finally:
        for c in opened:
            await c.close()
        for s in sessions:
            await s.close()
    return {"elapsed": elapsed, "errors": errors,
            "latencies_ms": [round(x * 1e3, 4) for x in latencies]}


def generate_load(target: str, model: str, api: str, concurrency: int, seconds: float,
                  processes: int = 2, channels: int = 2) -> dict[str, Any]:
    """Throughput and latency percentiles of `concurrency` callers split over `processes`
    load processes (never more processes than callers), each on `channels` connections."""
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (i < concurrency % processes)
              for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-m", "bench.load", target, model, api,
                               str(n), str(seconds), str(channels)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True) for n in shares]
    outs = [json.loads(p.communicate(timeout=seconds + 120)[0]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a load process failed against {target}")
    latencies = sorted(x for o in outs for x in o["latencies_ms"])
    # each process measured its own window; they overlap, so requests / longest window
    elapsed = max(o["elapsed"] for o in outs)
    return {"requests": len(latencies), "errors": sum(o["errors"] for o in outs),
            "throughput_rps": round(len(latencies) / elapsed, 1),
            "p50_ms": _percentile(latencies, 50), "p99_ms": _percentile(latencies, 99)}


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] if ordered else 0.0


if __name__ == "__main__":
    target, model, api, concurrency, seconds = sys.argv[1:6]
    channels = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    print(json.dumps(asyncio.run(generate(target, model, api, int(concurrency),
                                          float(seconds), channels))))
