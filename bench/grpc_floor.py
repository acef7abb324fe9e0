"""The floor of one call: a bare grpc.aio server that parses each request and answers canned bytes.

`python -m bench.grpc_floor PORT ANSWERS_DIR [asyncio|uvloop] [MODEL.onnx]` serves `ModelInfer`
(Open Inference Protocol) and `Classify` (smallserve.v1) on 127.0.0.1:PORT. Each handler parses
the request into its message, as any server must, and returns the bytes of a real answer of
this server to the same call (ANSWERS_DIR/ModelInfer.bin, ANSWERS_DIR/Classify.bin), so
responses are the same size on the wire. No interceptors, no metrics, no model: what is left is
the cost of grpc.aio itself, both ways, with the server options this server uses. The gap
between it and this server is our own per-call work.

With MODEL.onnx (a classifier taking float32 [N, 1, 28, 28]) each handler also runs it on the
request's pixels, on the event loop, in onnxruntime with one thread and no spinning, as this
server runs a small model: the floor of any Python server that runs the model once per call.
The gap between it and this server is our own per-call work beside the model's run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.smallserve.v1 import model_service_pb2 as api
from serving.event_loop import run_loop
from serving.server import CONNECTION_OPTIONS

# method path -> the request message the server must parse
METHODS = {
    "/inference.GRPCInferenceService/ModelInfer": ("ModelInfer", oip.ModelInferRequest),
    "/smallserve.v1.ModelService/Classify": ("Classify", api.ClassifyRequest),
}


def handler(request_type: Any, answer: bytes,
            model: Callable[[Any], object] | None = None) -> grpc.RpcMethodHandler:
    async def answer_call(request: Any, context: grpc.aio.ServicerContext) -> bytes:
        return answer

    async def run_and_answer(request: Any, context: grpc.aio.ServicerContext) -> bytes:
        model(request)  # type: ignore[misc]
        return answer

    return grpc.unary_unary_rpc_method_handler(
        answer_call if model is None else run_and_answer,
        request_deserializer=request_type.FromString, response_serializer=lambda raw: raw)


def model_runs(onnx: Path) -> dict[str, Callable[[Any], object]]:
    """Per method: the model's run on a request's pixels (one 28x28 grey image per row)."""
    import onnxruntime as ort

    from serving.runtime.session import SessionConfig, session_options

    # the server's own options for a small classifier under --intra-op-threads 1
    options = session_options(SessionConfig(intra_op_threads=1, allow_spinning=False))
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name

    def run(raw: bytes) -> object:
        pixels = np.frombuffer(raw, np.uint8).reshape(-1, 1, 28, 28).astype(np.float32)
        return session.run(None, {feed: pixels})

    return {"ModelInfer": lambda request: run(request.raw_input_contents[0]),
            "Classify": lambda request: run(request.pixels.data)}


async def serve(port: int, answers: Path, onnx: Path | None = None) -> None:
    runs = model_runs(onnx) if onnx else {}
    handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for path, (name, request_type) in METHODS.items():
        service, method = path[1:].split("/")
        handlers.setdefault(service, {})[method] = handler(
            request_type, (answers / f"{name}.bin").read_bytes(), runs.get(name))
    server = grpc.aio.server(options=CONNECTION_OPTIONS)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(s, m) for s, m in handlers.items()])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    loop = sys.argv[3] if len(sys.argv) > 3 else "asyncio"
    model = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    run_loop(serve(int(sys.argv[1]), Path(sys.argv[2]), model), loop)
