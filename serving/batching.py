"""Dynamic batching, as Triton does it: concurrent calls to one model merged into one run.

Requests queue per model version. A batch starts as soon as a run slot is free and either
`max_batch_size` rows are waiting or the oldest request has waited `max_queue_delay_us`
(0: take whatever is waiting, so a lone call pays no delay while calls that arrive during a run
share the next one). Calls merge only when their signatures agree; the model runs once on the
merged rows and each caller gets exactly its own part. Calls that were cancelled, or whose
deadline passed while queued, are dropped before the run; a full queue answers
RESOURCE_EXHAUSTED at once.

What a call carries and how calls merge is the model's batching strategy: for image models
(TensorBatching) tensors concatenated along axis 0 and sliced back; for translation
(serving.runners.translator.SentenceBatching) tokenised sentences padded and masked into one
decode, merged only with calls of the same search and the same source-length bucket.

A call that finds the batcher idle (nothing queued, a run slot free, no queue delay) runs at
once from its own handler, without the scheduler task: at concurrency 1 every call is such a
call, and the two task hand-offs it skips are a measurable part of its latency.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Protocol

import numpy as np

from serving.errors import DeadlineExceeded, TooLarge
from serving.execution import InferencePool

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchingConfig:
    enabled: bool = True
    max_batch_size: int = 64  # rows per model run (a larger single request runs alone)
    max_queue_delay_us: int = 0
    max_queue_size: int = 4096  # rows waiting, per model version
    instances: int = 1  # batches of one model running at once
    # sequence models: decode calls step by step together, admitting and releasing calls
    # between steps (serving.decoding.scheduler); False merges whole decodes as above
    iteration_level: bool = True
    step_rows: int = 128  # decoder rows per step
    caller_share: float = 0.5  # most of a step batch one caller may hold while others wait

    def for_model(self, overrides: dict[str, Any]) -> BatchingConfig:
        """A model's manifest (serving.dynamic_batching) may tune its own batching."""
        known = {k: v for k, v in overrides.items() if k in self.__dataclass_fields__}
        return BatchingConfig(**{**self.__dict__, **known})


class BatchStrategy(Protocol):
    """How a model's calls are measured, matched and run together."""

    def rows(self, payload: Any) -> int: ...

    def signature(self, payload: Any) -> Hashable:
        """Calls merge only when their signatures are equal."""

    def run(self, payloads: list[Any]) -> list[Any]:
        """One run for all payloads; one result per payload, in order (on a worker)."""

    def inline_kind(self, rows: int) -> Hashable | None:
        """What runs of this many rows are called for serving.execution (None: never inline)."""


def call_slices(sizes: list[int]) -> list[slice]:
    """Where each call's rows lie in a merged run: consecutive, in call order."""
    ends = list(accumulate(sizes))
    return [slice(end - n, end) for n, end in zip(sizes, ends, strict=True)]


def split(results: list[Any], sizes: list[int]) -> list[list[Any]]:
    """One merged run's results cut back into consecutive parts, one per call."""
    return [results[part] for part in call_slices(sizes)]


class RunRecorder(Protocol):
    """Where a batcher reports each model run (a runner's statistics)."""

    def record_execution(self, rows: int) -> None: ...


class TensorBatching:
    """Tensor feeds: merged along axis 0 when every input agrees beyond it; outputs sliced.
    `kind` names this model's runs for serving.execution (with the row count added)."""

    def __init__(self, run_graph: Callable[[Tensors], Tensors], kind: Hashable) -> None:
        self.run_graph = run_graph
        self.kind = kind

    def rows(self, payload: Tensors) -> int:
        return next(iter(payload.values())).shape[0]

    def signature(self, payload: Tensors) -> Hashable:
        return tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(payload.items()))

    def run(self, payloads: list[Tensors]) -> list[Tensors]:
        if len(payloads) == 1:
            return [self.run_graph(payloads[0])]
        feeds = {name: np.concatenate([p[name] for p in payloads]) for name in payloads[0]}
        outputs = self.run_graph(feeds)
        return [{k: v[part] for k, v in outputs.items()}
                for part in call_slices([self.rows(p) for p in payloads])]

    def inline_kind(self, rows: int) -> Hashable | None:
        return self.kind, rows


@dataclass
class _Request:
    payload: Any
    rows: int
    signature: Hashable
    future: asyncio.Future[tuple[Any, int, int]]
    enqueued_ns: int
    deadline: float | None  # time.monotonic()


@dataclass
class DynamicBatcher:
    name: str  # the model, for error messages
    config: BatchingConfig
    pool: InferencePool
    strategy: BatchStrategy
    recorder: RunRecorder
    _queue: deque[_Request] = field(default_factory=deque)
    _queued_rows: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _slot_freed: asyncio.Event = field(default_factory=asyncio.Event)
    _running: int = 0  # batches running now, at most config.instances
    _task: asyncio.Task[None] | None = None

    def inferences(self, payload: Any) -> int:
        """What the call counts for in the statistics: its rows."""
        return self.strategy.rows(payload)

    def run_now(self, payload: Any, deadline: float | None) -> tuple[Any, int, int] | None:
        """This call's result (with 0 ns queued and the ns computing) when it can run at once
        on the event loop: nothing queued, a slot free, no queue delay, and a run of its size
        known to be short. None: submit() it. At concurrency 1 and with small models this is
        nearly every call, and it skips the future, the request record and the abandonment
        event a queued call needs."""
        rows = self.strategy.rows(payload)
        kind = self.strategy.inline_kind(rows)
        if not self._idle() or not self.pool.runs_inline(kind):
            return None
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded("the deadline passed before the call could run")
        results, compute_ns = self.pool.run_inline(kind, self.strategy.run, [payload])
        self.recorder.record_execution(rows)
        return results[0], 0, compute_ns

    async def submit(self, payload: Any, deadline: float | None,
                     caller: str = "") -> tuple[Any, int, int]:
        """This call's result, with the ns it spent queued and computing (calls merge in
        arrival order, whoever their caller)."""
        rows = self.strategy.rows(payload)
        if self._queued_rows + rows > self.config.max_queue_size:
            raise TooLarge(f"model {self.name} has {self._queued_rows} rows queued; "
                           f"the queue holds {self.config.max_queue_size}")
        loop = asyncio.get_running_loop()
        request = _Request(payload, rows, self.strategy.signature(payload), loop.create_future(),
                           time.perf_counter_ns(), deadline)
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
            rows = sum(r.rows for r in batch)
            deadlines = [r.deadline for r in batch]
            deadline = None if None in deadlines else max(deadlines)  # type: ignore[type-var]
            started = time.perf_counter_ns()
            # set once every caller of the batch is gone: its run stops at the next step
            abandoned = threading.Event()

            def gone(_: object) -> None:
                if all(r.future.done() for r in batch):
                    abandoned.set()

            for request in batch:
                request.future.add_done_callback(gone)
            try:
                results, _, compute_ns = await self.pool.run(
                    self.strategy.inline_kind(rows), deadline, self.strategy.run,
                    [r.payload for r in batch], abandoned=abandoned)
            except Exception as e:
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(e)
                return
            self.recorder.record_execution(rows)
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result((result, started - request.enqueued_ns,
                                               compute_ns))
        finally:
            self._running -= 1
            self._slot_freed.set()
            if self._queue and (self._task is None or self._task.done()):
                self._task = asyncio.create_task(self._schedule())
