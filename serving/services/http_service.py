"""The Open Inference Protocol's REST form (KServe v2 / Triton HTTP) on its own port, on the
same event loop as gRPC: a converter between HTTP/JSON and serving.services.open_inference.

What curl, tritonclient.http, the kserve SDK's REST client and KServe's probes use: health,
server and model metadata, readiness, inference with JSON tensors or the binary tensor data
extension, model configuration, statistics and the repository index. Errors are the spec's
`{"error": "..."}` with the HTTP status of the gRPC code; the same bearer tokens, TLS, size
limit and metrics as the gRPC port. A client that disconnects cancels its call's handler, which
drops its queued work, as a cancelled gRPC call does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from serving import metrics
from serving.errors import InvalidInput, ServingError, Unauthenticated
from serving.inspector import routes as inspector_routes
from serving.logs import RateLimitedLog
from serving.oip.json_tensors import (
    BINARY_HEADER,
    decode_inputs,
    encode_output,
    json_object,
    parse_inputs,
    split_body,
)
from serving.runners.base import Runner
from serving.security import SecurityConfig, bearer_accepted
from serving.services import open_inference as oip
from serving.services.context import ServerContext

log = logging.getLogger("serving.http")
client_errors = RateLimitedLog(log)

API = "http"
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
CODE_OF_STATUS = {404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED,
                  503: grpc.StatusCode.UNAVAILABLE}
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})  # probes need no token
# bodies larger than this are parsed on a worker: json.loads of megabytes would hold the loop
INLINE_BODY_BYTES = 256 * 1024
INT_TYPES = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64,
             FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_FIXED64,
             FieldDescriptor.TYPE_SFIXED64}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(ctx: ServerContext, security: SecurityConfig, max_body_bytes: int,
              inspector: bool = False) -> web.Application:
    """inspector: also serve the web inspector (serving.inspector); its static page needs no
    token, its model list and the REST calls it makes do."""
    service = HttpService(ctx)
    open_paths = OPEN_PATHS | inspector_routes.OPEN_PATHS if inspector else OPEN_PATHS
    app = web.Application(client_max_size=max_body_bytes, middlewares=[
        _errors_and_metrics(ctx), _authentication(security, open_paths)])
    if inspector:
        inspector_routes.add_routes(app, ctx)
    v = "/v2/models/{name}/versions/{version}"
    m = "/v2/models/{name}"
    app.add_routes([
        web.get("/v2/health/live", service.live),
        web.get("/v2/health/ready", service.ready),
        web.get("/v2", service.server_metadata),
        web.get("/v2/models/stats", service.statistics),
        web.get(m, service.model_metadata), web.get(v, service.model_metadata),
        web.get(m + "/ready", service.model_ready), web.get(v + "/ready", service.model_ready),
        web.get(m + "/config", service.model_config),
        web.get(v + "/config", service.model_config),
        web.get(m + "/stats", service.statistics), web.get(v + "/stats", service.statistics),
        web.post(m + "/infer", service.infer), web.post(v + "/infer", service.infer),
        web.post("/v2/repository/index", service.repository_index),
        web.post("/v2/repository/models/{name}/load", service.load_model),
        web.post("/v2/repository/models/{name}/unload", service.unload_model),
    ])
    return app


class HttpService:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": self.ctx.ready}, status=200 if self.ctx.ready
                                 else 503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _message(oip.server_metadata())

    async def model_metadata(self, request: web.Request) -> web.Response:
        return _message(oip.model_metadata(self.ctx, await self._runner(request)))

    async def model_ready(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        ready = oip.model_ready(self.ctx, name, request.match_info.get("version", ""))
        return web.json_response({"name": name, "ready": ready}, status=200 if ready else 503)

    async def model_config(self, request: web.Request) -> web.Response:
        return _message(oip.model_config(await self._runner(request)))

    async def statistics(self, request: web.Request) -> web.Response:
        return _message(oip.statistics(self.ctx, request.match_info.get("name", ""),
                                       request.match_info.get("version", "")))

    async def repository_index(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInput("'ready' must be true or false")
        index = oip.repository_index(self.ctx, ready).models
        return web.json_response([_json(entry) for entry in index])

    async def load_model(self, request: web.Request) -> web.Response:
        await _json_object(request)  # parameters (a config override) are not supported
        await oip.load_model(self.ctx, request.match_info["name"])
        return web.json_response({})

    async def unload_model(self, request: web.Request) -> web.Response:
        await _json_object(request)
        await oip.unload_model(self.ctx, request.match_info["name"])
        return web.json_response({})

    async def infer(self, request: web.Request) -> web.Response:
        runner = await self._runner(request)
        body = await request.read()
        header = request.headers.get(BINARY_HEADER)
        if len(body) > INLINE_BODY_BYTES:
            call = await self.ctx.run(None, self._decode, runner, body, header)
        else:
            call = self._decode(runner, body, header)
        inputs, parameters, wanted, binary, request_id = call
        outputs = await oip.infer(self.ctx, runner, inputs, parameters,
                                  [(name, k) for name, k, _ in wanted],
                                  _deadline(parameters), _caller(request))
        entries, chunks = [], []
        for (name, array), (_, _, binary_asked) in zip(outputs, wanted, strict=True):
            entry, raw = encode_output(name, array, binary or binary_asked)
            entries.append(entry)
            if raw is not None:
                chunks.append(raw)
        answer: dict[str, Any] = {"model_name": runner.name,
                                  "model_version": str(runner.version), "outputs": entries}
        if request_id:
            answer["id"] = request_id
        head = json.dumps(answer).encode()
        if not chunks:
            return web.Response(body=head, content_type="application/json")
        return web.Response(body=b"".join([head, *chunks]),
                            content_type="application/octet-stream",
                            headers={BINARY_HEADER: str(len(head))})

    def _decode(self, runner: Runner, body: bytes, header: str | None) -> tuple[
            dict[str, np.ndarray], dict[str, Any], list[tuple[str, int, bool]], bool, str]:
        """A ModelInfer body checked from its headers first, then decoded: inputs,
        parameters, (output, classification k, binary) asked for, all outputs binary, id."""
        request, binary = split_body(body, header)
        inputs = parse_inputs(request)
        oip.check_input_headers(runner, [oip.InputHeader(t.name, t.datatype, t.shape)
                                         for t in inputs], self.ctx.limits.max_batch_size)
        parameters = request.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInput("'parameters' must be an object")
        asked = request.get("outputs") or []
        if not isinstance(asked, list) or not all(
                isinstance(o, dict) and isinstance(o.get("name"), str) and
                isinstance(o.get("parameters") or {}, dict) for o in asked):
            raise InvalidInput("'outputs' must be a list of objects with a 'name'")
        wanted = oip.requested_outputs(runner, [(o["name"], _classification(o)) for o in asked])
        binary_asked = {o["name"]: bool((o.get("parameters") or {}).get("binary_data"))
                        for o in asked}
        request_id = request.get("id", "")
        if not isinstance(request_id, str):
            raise InvalidInput("'id' must be a string")
        return (decode_inputs(inputs, binary), parameters,
                [(name, k, binary_asked.get(name, False)) for name, k in wanted],
                bool(parameters.get("binary_data_output")), request_id)

    async def _runner(self, request: web.Request) -> Runner:
        return await oip.model_runner(self.ctx, request.match_info["name"],
                                      request.match_info.get("version", ""))


def _classification(output: dict[str, Any]) -> int | None:
    parameters = output.get("parameters") or {}
    if "classification" not in parameters:
        return None
    return oip.int_parameter(parameters["classification"],
                             f"output {output['name'][:100]!r} classification")


def _caller(request: web.Request) -> str:
    """The connection a call came on: who the scheduler shares decoder steps fairly among."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"http:{peer[0]}:{peer[1]}" if peer else "http"


def _deadline(parameters: dict[str, Any]) -> float | None:
    """Triton's `timeout` request parameter, in microseconds."""
    if "timeout" not in parameters:
        return None
    micros = oip.int_parameter(parameters["timeout"], "parameter timeout")
    return time.monotonic() + micros / 1e6


async def _json_object(request: web.Request) -> dict[str, Any]:
    """An optional JSON object body (empty: {})."""
    body = await request.read()
    return json_object(body) if body.strip() else {}


def _message(message: Message) -> web.Response:
    return web.json_response(_json(message))


def _json(message: Message) -> dict[str, Any]:
    """A protobuf message as the REST form writes it: field names as in the proto, 64-bit
    integers as JSON numbers (protobuf's own JSON writes them as strings)."""
    return _numbers(json_format.MessageToDict(message, preserving_proto_field_name=True),
                    message.DESCRIPTOR)


def _numbers(value: Any, descriptor: Any) -> Any:
    for field in descriptor.fields:
        if field.name not in value:
            continue
        item = value[field.name]
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                entry = field.message_type.fields_by_name["value"]
                if entry.message_type is not None:
                    value[field.name] = {k: _numbers(v, entry.message_type)
                                         for k, v in item.items()}
            elif isinstance(item, list):
                value[field.name] = [_numbers(v, field.message_type) for v in item]
            else:
                value[field.name] = _numbers(item, field.message_type)
        elif field.type in INT_TYPES:
            value[field.name] = [int(v) for v in item] if isinstance(item, list) else int(item)
    return value


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _errors_and_metrics(ctx: ServerContext) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            response = await handler(request)
            code = CODE_OF_STATUS.get(response.status, code)  # readiness answers 503
            return response
        except ServingError as e:
            code = e.code
            status = HTTP_STATUS.get(e.code, 500)
            client_errors.info(e.code.name, "%s %s: %d %s", request.method,
                               request.path[:200], status, e)
            return _error(status, str(e))
        except web.HTTPException as e:  # no route (404), wrong method (405), too large (413)
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if e.status == 413 else CODE_OF_STATUS.get(
                e.status, grpc.StatusCode.UNKNOWN)
            return _error(e.status, e.reason)
        except asyncio.CancelledError:  # the client hung up
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as e:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s %s failed", request.method, request.path[:200])
            return _error(500, f"internal error: {e}")
        finally:
            # the route's own method and path, never the client's: a made-up verb or path is
            # "unknown", so the label values stay a fixed set
            route = request.match_info.route
            method = f"{route.method} {route.resource.canonical}" \
                if route.resource is not None else "unknown"
            model = request.match_info.get("name", "")
            if model not in ctx.registry.models():
                model = ""  # bounded labels: no label per client-made name or path
            metrics.count_call(API, method, model, code.name,
                               time.perf_counter() - start)

    return middleware


def _authentication(security: SecurityConfig,
                    open_paths: frozenset[str] = OPEN_PATHS) -> Any:
    digests = tuple(security.token_digests)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if digests and request.path not in open_paths and \
                not bearer_accepted(digests, request.headers.get("Authorization")):
            raise Unauthenticated("missing or invalid bearer token (header "
                                   "'Authorization: Bearer <token>')")
        return await handler(request)

    return middleware
