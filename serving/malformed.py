"""INVALID_ARGUMENT for request bytes that do not parse as the method's message.

gRPC itself answers such calls with UNKNOWN and logs a traceback at ERROR level, so anyone could
fill the server's log and a client could not tell its own mistake from a server fault. This
interceptor takes over deserialising unary requests (every method of both APIs) and refuses
what does not parse.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from serving import metrics


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler | None]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer
        if handler.response_streaming:
            inner_stream = handler.unary_stream

            async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                request = await _parsed(parse, raw, context, details.method)
                result = inner_stream(request, context)
                if hasattr(result, "__aiter__"):
                    async for response in result:
                        await context.write(response)
                    return None
                return await result if inspect.isawaitable(result) else result

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, response_serializer=handler.response_serializer)
        inner = handler.unary_unary

        async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            result = inner(await _parsed(parse, raw, context, details.method), context)
            return await result if inspect.isawaitable(result) else result

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, response_serializer=handler.response_serializer)


async def _parsed(parse: Callable[[bytes], Any], raw: bytes,
                  context: grpc.aio.ServicerContext, method: str) -> Any:
    try:
        return parse(raw)
    except (DecodeError, ValueError, UnicodeDecodeError) as e:
        metrics.REFUSED.labels(method, grpc.StatusCode.INVALID_ARGUMENT.name).inc()
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request is not a valid {_name(parse)} message: {e}")


def _name(parse: Callable[[bytes], Any]) -> str:
    owner = getattr(parse, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return getattr(descriptor, "full_name", "protobuf")
