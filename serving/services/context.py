"""The one inference path every front end calls, and what the front ends share: registry,
limits, readiness, the worker pool and the dynamic batchers.

A call is checked by its runner first (on the event loop when that is cheap, on a worker when
it decodes images or tokenises long texts), then merged with other calls through its model
version's batcher (or run alone when batching is off), then turned into named output tensors.
A call that is cancelled or whose deadline passes while it waits is dropped before it starts;
asyncio cancels the pool's future when the awaiting handler is cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from serving.batching import BatchingConfig, DynamicBatcher
from serving.decoding.scheduler import SchedulingConfig, StepScheduler
from serving.errors import InvalidInput, NotReady
from serving.execution import InferencePool
from serving.preprocess.tensors import check_batch_size, check_call_elements
from serving.registry import ModelRegistry
from serving.runners.base import Parameters, Runner, RunnerStats, Tensors

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
    # one batcher per loaded model version, made on its first call
    # one batcher per loaded model version (None: batching off for it), made on its first
    # call; the runner's statistics tell a reloaded version from the one it replaced
    _batchers: dict[tuple[str, int], tuple[RunnerStats, Any]] = field(
        default_factory=dict)

    def check_ready(self) -> None:
        if not self.ready:
            raise NotReady("the server is loading its models; retry shortly")

    async def runner(self, name: str, version: int, task: str = "") -> Runner:
        """The runner of name/version (0: latest), loading a version asked for by number;
        with task, a model of another task is INVALID_ARGUMENT."""
        self.check_ready()
        runner = self.registry.lookup(name, version)
        if runner is None:
            runner = await asyncio.get_running_loop().run_in_executor(
                None, self.registry.get_or_load, name, version)
        if task and runner.task != task:
            raise InvalidInput(f"model {runner.name} is a {runner.task} model, not a {task} "
                               "model")
        return runner

    async def run(self, deadline: float | None, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on the worker pool, unless the deadline (time.monotonic()) passes first."""
        result, _, _ = await self.pool.run(None, deadline, fn, *args)
        return result

    async def infer(self, runner: Runner, inputs: Tensors, parameters: Parameters,
                    outputs: list[str], deadline: float | None, caller: str = "") -> Tensors:
        """One call through the one inference path: checked, batched, named outputs."""
        if not inputs:
            raise InvalidInput(f"the call has no input; model {runner.name} takes "
                               f"{[t.name for t in runner.input_specs]}")
        for name, array in inputs.items():
            if array.ndim == 0:
                raise InvalidInput(f"input {name!r} has no batch axis: its shape must start "
                                   "with the number of rows")
        check_batch_size(len(next(iter(inputs.values()))), self.limits.max_batch_size)
        check_call_elements(inputs)
        if runner.checks_inline(inputs):
            payload = runner.check(inputs, parameters)
        else:
            payload = await self.run(deadline, runner.check, inputs, parameters)
        result = await self.batched(runner, payload, deadline, caller)
        return runner.outputs(result, outputs)

    async def batched(self, runner: Runner, payload: Any, deadline: float | None,
                      caller: str = "") -> Any:
        """One checked call's result, merged with other calls through its model version's
        batcher, or run alone when batching is off; recorded in the runner's statistics.
        Only runs the strategy names may run inline (serving.execution); whole decodes never
        do."""
        batcher = self._batcher(runner)
        start = time.perf_counter_ns()
        try:
            if batcher is not None:
                rows = batcher.inferences(payload)
                done = batcher.run_now(payload, deadline)
                outcome = done if done is not None else \
                    await batcher.submit(payload, deadline, caller=caller)
            else:
                rows, outcome = await self._alone(runner, payload, deadline)
        except Exception:
            runner.stats.record_failure(time.perf_counter_ns() - start)
            raise
        result, queue_ns, compute_ns = outcome
        runner.stats.record_request(rows, time.perf_counter_ns() - start, queue_ns, compute_ns)
        return result

    async def _alone(self, runner: Runner, payload: Any,
                     deadline: float | None) -> tuple[int, tuple[Any, int, int]]:
        """Batching off: the call's rows, and its own run's result with the ns it waited and
        ran."""
        strategy = runner.batch_strategy()
        rows = strategy.rows(payload)
        results, waited_ns, compute_ns = await self.pool.run(
            strategy.inline_kind(rows), deadline, strategy.run, [payload])
        runner.stats.record_execution(rows)
        return rows, (results[0], waited_ns, compute_ns)

    def _batcher(self, runner: Runner) -> DynamicBatcher | StepScheduler | None:
        key = (runner.name, runner.version)
        known = self._batchers.get(key)
        if known is not None and known[0] is runner.stats:
            return known[1]
        # new, or the version was reloaded: decided once per loaded runner
        self._forget_unloaded()
        config = self.batching.for_model(runner.manifest.serving.get("dynamic_batching", {}))
        steps = runner.step_strategy() if config.enabled and config.iteration_level else None
        batcher: DynamicBatcher | StepScheduler | None
        if steps is not None:
            batcher = StepScheduler(runner.name, steps, self.pool, runner.stats,
                                    SchedulingConfig(max_rows=config.step_rows,
                                                     max_queue_rows=config.max_queue_size,
                                                     caller_share=config.caller_share),
                                    inferences=runner.batch_strategy().rows)
        elif config.enabled:
            batcher = DynamicBatcher(runner.name, config, self.pool, runner.batch_strategy(),
                                     runner.stats)
        else:
            batcher = None
        self._batchers[key] = (runner.stats, batcher)
        return batcher

    def _forget_unloaded(self) -> None:
        """Drop the batchers of versions the registry no longer holds (their queues are
        empty once their last callers are answered)."""
        loaded = {(r.name, r.version) for r in self.registry.runners()}
        for key in [k for k in self._batchers if k not in loaded]:
            del self._batchers[key]
