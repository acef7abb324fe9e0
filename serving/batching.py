"""Dynamic batching, as Triton does it: concurrent calls to one model merged into one run.

Requests queue per model version. A batch starts as soon as a run slot is free and either
`max_batch_size` rows are waiting or the oldest request has waited `max_queue_delay_us`
(0: take whatever is waiting, so a lone call pays no delay while calls that arrive during a run
share the next one). Rows are concatenated along axis 0, the model runs once, and each caller
gets exactly its own slice. Calls that were cancelled, or whose deadline passed while queued,
are dropped before the run; a full queue answers RESOURCE_EXHAUSTED at once.

A call that finds the batcher idle (nothing queued, a run slot free, no queue delay) runs at
once from its own handler, without the scheduler task: at concurrency 1 every call is such a
call, and the two task hand-offs it skips are a measurable part of its latency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import DeadlineExceeded, TooLarge
from serving.execution import InferencePool
from serving.runners.base import Runner

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchingConfig:
    enabled: bool = True
    max_batch_size: int = 64  # rows per model run (a larger single request runs alone)
    max_queue_delay_us: int = 0
    max_queue_size: int = 4096  # rows waiting, per model version
    instances: int = 1  # batches of one model running at once

    def for_model(self, overrides: dict[str, Any]) -> BatchingConfig:
        """A model's manifest (serving.dynamic_batching) may tune its own batching."""
        known = {k: v for k, v in overrides.items() if k in self.__dataclass_fields__}
        return BatchingConfig(**{**self.__dict__, **known})


@dataclass
class _Request:
    feeds: Tensors
    rows: int
    future: asyncio.Future[tuple[Tensors, int, int]]
    enqueued_ns: int
    deadline: float | None  # time.monotonic()

    @property
    def signature(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        """Requests batch together only when every input agrees beyond the batch axis."""
        return tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(self.feeds.items()))


@dataclass
class DynamicBatcher:
    runner: Runner
    config: BatchingConfig
    pool: InferencePool
    _queue: deque[_Request] = field(default_factory=deque)
    _queued_rows: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _slot_freed: asyncio.Event = field(default_factory=asyncio.Event)
    _running: int = 0  # batches running now, at most config.instances
    _task: asyncio.Task[None] | None = None

    async def submit(self, feeds: Tensors, deadline: float | None) -> tuple[Tensors, int, int]:
        """All outputs for these rows, with the ns spent queued and computing."""
        rows = next(iter(feeds.values())).shape[0]
        if self._queued_rows + rows > self.config.max_queue_size:
            raise TooLarge(f"model {self.runner.name} has {self._queued_rows} rows queued; "
                           f"the queue holds {self.config.max_queue_size}")
        loop = asyncio.get_running_loop()
        request = _Request(feeds, rows, loop.create_future(), time.perf_counter_ns(), deadline)
        if self._idle():
            self._running += 1
            await self._run([request])
            return request.future.result()
        self._queue.append(request)
        self._queued_rows += rows
        self._arrived.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._schedule())
        return await request.future

    def _idle(self) -> bool:
        return not self._queue and self._running < self.config.instances \
            and self.config.max_queue_delay_us == 0

    async def _schedule(self) -> None:
        while self._queue:
            while self._running >= self.config.instances:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            await self._wait_for_rows()
            batch = self._take_batch()
            if batch:
                self._running += 1
                asyncio.create_task(self._run(batch))

    async def _wait_for_rows(self) -> None:
        delay_ns = self.config.max_queue_delay_us * 1000
        while self._queue and self._queued_rows < self.config.max_batch_size:
            waited = time.perf_counter_ns() - self._queue[0].enqueued_ns
            if waited >= delay_ns:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), (delay_ns - waited) / 1e9)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        rows, now, kept = 0, time.monotonic(), deque[_Request]()
        while self._queue:
            request = self._queue.popleft()
            if request.future.done():  # cancelled by its caller: drop the work
                self._queued_rows -= request.rows
                continue
            if request.deadline is not None and now >= request.deadline:
                self._queued_rows -= request.rows
                request.future.set_exception(
                    DeadlineExceeded("the deadline passed while the call was queued"))
                continue
            fits = not batch or (rows + request.rows <= self.config.max_batch_size
                                 and request.signature == batch[0].signature)
            if not fits:
                kept.append(request)
                continue
            batch.append(request)
            rows += request.rows
            self._queued_rows -= request.rows
        self._queue.extendleft(reversed(kept))
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        """Run one batch in a slot already taken; frees the slot."""
        try:
            feeds = batch[0].feeds if len(batch) == 1 else {
                name: np.concatenate([r.feeds[name] for r in batch]) for name in batch[0].feeds}
            rows = sum(r.rows for r in batch)
            deadlines = [r.deadline for r in batch]
            deadline = None if None in deadlines else max(deadlines)  # type: ignore[type-var]
            started = time.perf_counter_ns()
            try:
                outputs, _, compute_ns = await self.pool.run(
                    (self.runner.name, self.runner.version, rows), deadline,
                    self.runner.infer, feeds)
            except Exception as e:
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(e)
                return
            self.runner.stats.record_execution(rows)
            offset = 0
            for request in batch:
                part = {k: v[offset:offset + request.rows] for k, v in outputs.items()}
                offset += request.rows
                if not request.future.done():
                    request.future.set_result((part, started - request.enqueued_ns, compute_ns))
        finally:
            self._running -= 1
            self._slot_freed.set()
            if self._queue and (self._task is None or self._task.done()):
                self._task = asyncio.create_task(self._schedule())
