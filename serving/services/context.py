"""What every gRPC service of the server shares: registry, limits, readiness, the worker pool.

Inference goes through a dynamic batcher per model version unless batching is off, and runs on
the thread pool (onnxruntime releases the GIL) unless it is known to be short enough to run
inline (serving.execution). A call that is cancelled or whose deadline passes while it waits
is dropped before it starts; asyncio cancels the pool's future when the awaiting handler is
cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np

from serving import metrics
from serving.batching import BatchingConfig, DynamicBatcher
from serving.errors import NotReady, ServingError
from serving.execution import InferencePool
from serving.registry import ModelRegistry
from serving.runners import Runner
from serving.runners.sequence import SequenceRunner

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Limits:
    max_batch_size: int = 1024


@dataclass
class ServerContext:
    registry: ModelRegistry
    limits: Limits
    pool: InferencePool
    batching: BatchingConfig = field(default_factory=BatchingConfig)
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
        result, _, _ = await self.pool.run(None, _deadline(context), fn, *args)
        return result

    async def infer(self, context: grpc.aio.ServicerContext, runner: Runner,
                    feeds: dict[str, np.ndarray], outputs: list[str],
                    options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Run a model on one call's tensors (through its dynamic batcher when batching is on),
        recorded in the runner's statistics."""
        if isinstance(runner, SequenceRunner):
            # decoded and checked per call (images: on a worker), then merged as decodes
            call = await self.run(context, functools.partial(
                runner.call_from_tensors, feeds, **(options or {})))
            return runner.tensors_from_results(await self.batched(context, runner, call),
                                               outputs)
        results = await self.batched(context, runner, feeds)
        return {name: results[name] for name in outputs}

    async def batched(self, context: grpc.aio.ServicerContext, runner: Runner,
                      payload: Any) -> Any:
        """One call's work in the form its model's batch strategy takes, merged with other
        calls through the model's batcher, or run alone when batching is off; recorded in the
        runner's statistics. Only runs the strategy names may run inline
        (serving.execution); whole decodes never do."""
        batcher = self._batcher(runner)
        if batcher is not None:
            rows = batcher.strategy.rows(payload)
            return await self._recorded(context, runner, rows, batcher.submit, payload)
        strategy = runner.batch_strategy()
        rows = strategy.rows(payload)

        async def alone(deadline: float | None) -> tuple[Any, int, int]:
            results, waited_ns, compute_ns = await self.pool.run(
                strategy.inline_kind(rows), deadline, strategy.run, [payload])
            runner.stats.record_execution(rows)
            return results[0], waited_ns, compute_ns

        return await self._recorded(context, runner, rows, alone)

    async def _recorded(self, context: grpc.aio.ServicerContext, runner: Runner, rows: int,
                        submit: Callable[..., Awaitable[tuple[T, int, int]]], *args: Any) -> T:
        start = time.perf_counter_ns()
        try:
            result, queue_ns, compute_ns = await submit(*args, _deadline(context))
        except Exception:
            runner.stats.record_failure(time.perf_counter_ns() - start)
            raise
        runner.stats.record_request(rows, time.perf_counter_ns() - start, queue_ns, compute_ns)
        return result

    def _batcher(self, runner: Runner) -> DynamicBatcher | None:
        if runner.batcher is None:
            config = self.batching.for_model(runner.manifest.serving.get("dynamic_batching", {}))
            # kept on the runner, so a superseded version's queue goes away with it; False:
            # batching is off for this version, decided once
            runner.batcher = DynamicBatcher(runner, config, self.pool, runner.batch_strategy()) \
                if config.enabled else False
        return runner.batcher or None


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline on time.monotonic()'s clock."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


Handler = Callable[..., Awaitable[Any]]


def grpc_errors(method: Handler) -> Handler:
    """Map ServingError to its status code, anything else to a logged INTERNAL error, and count
    every call in the Prometheus metrics by API, method, model and status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        code, message = grpc.StatusCode.OK, ""
        try:
            return await method(self, request, context)
        except ServingError as e:
            code, message = e.code, str(e)
            log.info("%s: %s %s", method.__name__, e.code.name, e)
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
            metrics.labelled(metrics.REQUESTS, self.API, method.__name__, model, code.name).inc()
            metrics.labelled(metrics.REQUEST_SECONDS, self.API, method.__name__, model).observe(
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
