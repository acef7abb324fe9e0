"""What both gRPC services share: a call's deadline, and the mapping of errors to status
codes with every call counted in the Prometheus metrics."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from serving import metrics
from serving.errors import ServingError, TooLarge
from serving.logs import RateLimitedLog
from serving.preprocess.limits import input_limits

log = logging.getLogger("serving.services")
client_errors = RateLimitedLog(log)

Handler = Callable[..., Awaitable[Any]]


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline on time.monotonic()'s clock."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def grpc_errors(method: Handler) -> Handler:
    """Map ServingError to its status code, anything else to a logged INTERNAL error, and count
    every call in the Prometheus metrics by API, method, model and status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        code, message = grpc.StatusCode.OK, ""
        try:
            response = await method(self, request, context)
            byte_size = getattr(response, "ByteSize", None)  # a protobuf message
            size, limit = (byte_size() if byte_size else 0), input_limits().max_response_bytes
            if size > limit:  # gRPC would fail it after the handler, logged as a crash
                raise TooLarge(f"the answer is {size} bytes, above this server's message "
                               f"limit of {limit} (--max-message-bytes)")
            return response
        except ServingError as e:
            code, message = e.code, str(e)
            client_errors.info(e.code.name, "%s: %s %s", method.__name__, e.code.name, e)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as e:
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {e}"
            log.exception("%s failed", method.__name__)
        finally:
            # counted before the client can see the status: a scrape right after an error
            # answer must already include it
            model = _requested_model(request)
            if model not in self.ctx.registry.models():
                model = ""  # keeps label values bounded: no label per mistyped name
            metrics.count_call(self.API, method.__name__, model, code.name,
                               time.perf_counter() - start)
        await context.abort(code, message)

    return wrapper


def _requested_model(request: Any) -> str:
    """The model a request names, in either API's spelling."""
    for field_name in ("model_name", "name"):
        value = getattr(request, field_name, None)
        if isinstance(value, str):
            return value
    ref = getattr(request, "model", None)
    return getattr(ref, "name", "") if ref is not None else ""
