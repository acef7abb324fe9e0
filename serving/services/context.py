"""What every gRPC service of the server shares: registry, limits, readiness, the worker pool.

Inference runs on a thread pool (onnxruntime releases the GIL), never on the event loop. A
call that is cancelled or whose deadline passes while it waits for a worker is dropped before
it starts; asyncio cancels the pool's future when the awaiting handler is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from serving.errors import DeadlineExceeded, NotReady, ServingError
from serving.registry import ModelRegistry
from serving.runners import Runner

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Limits:
    max_batch_size: int = 1024


@dataclass
class ServerContext:
    registry: ModelRegistry
    limits: Limits
    workers: ThreadPoolExecutor
    ready: bool = False

    def check_ready(self) -> None:
        if not self.ready:
            raise NotReady("the server is loading its models; retry shortly")

    async def runner(self, name: str, version: int) -> Runner:
        self.check_ready()
        runner = self.registry.lookup(name, version)
        if runner is None:
            runner = await asyncio.get_running_loop().run_in_executor(
                None, self.registry.get_or_load, name, version)
        return runner

    async def run(self, context: grpc.aio.ServicerContext, fn: Callable[..., T],
                  *args: Any) -> T:
        """Run fn(*args) on the worker pool, unless the call's deadline passes first."""
        result, _, _ = await self._on_worker(context, fn, *args)
        return result

    async def infer(self, context: grpc.aio.ServicerContext, runner: Runner, batch: int,
                    fn: Callable[..., T], *args: Any) -> T:
        """run() for a model execution, recorded in the runner's statistics."""
        start = time.perf_counter_ns()
        try:
            result, queue_ns, compute_ns = await self._on_worker(context, fn, *args)
        except Exception:
            runner.stats.record_failure(time.perf_counter_ns() - start)
            raise
        runner.stats.record_success(batch, time.perf_counter_ns() - start, queue_ns, compute_ns)
        return result

    async def _on_worker(self, context: grpc.aio.ServicerContext, fn: Callable[..., T],
                         *args: Any) -> tuple[T, int, int]:
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        submitted = time.perf_counter_ns()

        def job() -> tuple[T, int, int]:
            started = time.perf_counter_ns()
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded("the deadline passed before a worker was free")
            result = fn(*args)
            return result, started - submitted, time.perf_counter_ns() - started

        return await asyncio.get_running_loop().run_in_executor(self.workers, job)


Handler = Callable[..., Awaitable[Any]]


def grpc_errors(method: Handler) -> Handler:
    """Map ServingError to its status code; anything else is a logged INTERNAL error."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except ServingError as e:
            log.info("%s: %s %s", method.__name__, e.code.name, e)
            await context.abort(e.code, str(e))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as e:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {e}")

    return wrapper
