"""The floor of one call: a bare grpc.aio server that parses each request and answers canned bytes.

`python -m bench.grpc_floor PORT ANSWERS_DIR [asyncio|uvloop]` serves `ModelInfer` (Open
Inference Protocol) and `Classify` (smallserve.v1) on 127.0.0.1:PORT. Each handler parses the
request into its message, as any server must, and returns the bytes of a real answer of this
server to the same call (ANSWERS_DIR/ModelInfer.bin, ANSWERS_DIR/Classify.bin), so responses
are the same size on the wire. No interceptors, no metrics, no model: what is left is the cost
of grpc.aio itself, both ways, with the server options this server uses. The gap between it
and this server is our own per-call work.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import grpc

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.smallserve.v1 import model_service_pb2 as api
from serving.event_loop import run_loop
from serving.server import CONNECTION_OPTIONS

# method path -> the request message the server must parse
METHODS = {
    "/inference.GRPCInferenceService/ModelInfer": ("ModelInfer", oip.ModelInferRequest),
    "/smallserve.v1.ModelService/Classify": ("Classify", api.ClassifyRequest),
}


def handler(request_type: Any, answer: bytes) -> grpc.RpcMethodHandler:
    async def answer_call(request: Any, context: grpc.aio.ServicerContext) -> bytes:
        return answer

    return grpc.unary_unary_rpc_method_handler(
        answer_call, request_deserializer=request_type.FromString,
        response_serializer=lambda raw: raw)


async def serve(port: int, answers: Path) -> None:
    handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for path, (name, request_type) in METHODS.items():
        service, method = path[1:].split("/")
        handlers.setdefault(service, {})[method] = handler(
            request_type, (answers / f"{name}.bin").read_bytes())
    server = grpc.aio.server(options=CONNECTION_OPTIONS)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(s, m) for s, m in handlers.items()])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    loop = sys.argv[3] if len(sys.argv) > 3 else "asyncio"
    run_loop(serve(int(sys.argv[1]), Path(sys.argv[2])), loop)
