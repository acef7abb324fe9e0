"""Where a model run happens: on the event loop itself when it is known to be short, otherwise
on the inference thread pool.

Handing a run to a pool thread and back costs two thread wake-ups and an event-loop wake-up:
about 0.2 ms of latency on a two-core machine, four times what a small classifier's whole run
costs (measured: a smallserve Classify of the MNIST MLP, without gRPC, 0.42 ms through the
pool vs 0.21 ms inline). So each kind of run (its model version and row count) keeps a moving
average of its own compute time, and runs whose average is under `inline_below_us` execute
inline. A run never measured goes to the pool, as does anything longer, so the loop is never
blocked for more than about that long and keeps taking calls while larger batches compute
(onnxruntime releases the GIL). 0 turns inline runs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from serving.errors import Abandoned, DeadlineExceeded

T = TypeVar("T")
# weight of the newest run in the moving average: a few slow runs move a kind to the pool
SMOOTHING = 0.2
# a run counts for at most this many times the inline limit: one run preempted on a busy
# machine (measured: 20-50x its usual time) would otherwise send its kind to the pool, and
# every call of that kind would pay the hand-off until the average came back down. Two slow
# runs in a row still move it.
OUTLIER_CAP = 3


class InferencePool:
    def __init__(self, workers: int, inline_below_us: int = 0) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="inference")
        self._closing = threading.Event()
        self.inline_below_ns = inline_below_us * 1000
        self._costs: dict[Hashable, float] = {}  # kind of run -> average compute ns

    def runs_inline(self, kind: Hashable | None) -> bool:
        cost = self._costs.get(kind) if kind is not None else None
        return cost is not None and cost < self.inline_below_ns

    def run_inline(self, kind: Hashable, fn: Callable[..., T], *args: Any) -> tuple[T, int]:
        """fn(*args) on the calling thread, for a kind that runs_inline(): its result and the ns
        it ran. Nothing to abandon: the run is over before anyone could give up on it."""
        started = time.perf_counter_ns()
        result = fn(*args)
        ns = time.perf_counter_ns() - started
        self._measured(kind, ns)
        return result, ns

    async def run(self, kind: Hashable | None, deadline: float | None,
                  fn: Callable[..., T], *args: Any,
                  abandoned: threading.Event | None = None) -> tuple[T, int, int]:
        """fn(*args) with the ns it waited for a worker and the ns it ran. `kind` names runs
        of alike cost (None: never inline); `deadline` (time.monotonic()) passing before a
        worker is free is DEADLINE_EXCEEDED.

        Long work (a decode, a batch of images) calls stop_if_abandoned() between its steps:
        it stops once `abandoned` is set (its callers are gone), its deadline passes or the
        server shuts down. When the awaiting caller is cancelled, the work is abandoned and
        this returns only once it has really stopped, so whoever holds a run slot for it
        holds it until then: abandoned work can never pile up on the workers."""
        submitted = time.perf_counter_ns()
        abandoned = abandoned or threading.Event()

        def job() -> tuple[T, int, int]:
            started = time.perf_counter_ns()
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded("the deadline passed before a worker was free")
            _current.work = _Work(abandoned, deadline, self._closing)
            try:
                result = fn(*args)
            finally:
                _current.work = None
            return result, started - submitted, time.perf_counter_ns() - started

        if self.runs_inline(kind):
            outcome = job()
        else:
            future = asyncio.get_running_loop().run_in_executor(self.executor, job)
            try:
                outcome = await asyncio.shield(future)
            except asyncio.CancelledError:
                abandoned.set()
                with contextlib.suppress(BaseException):
                    await future  # stops within one step; the caller is gone either way
                raise
        if kind is not None and self.inline_below_ns:
            self._measured(kind, outcome[2])
        return outcome

    def _measured(self, kind: Hashable, ns: int) -> None:
        previous = self._costs.get(kind)
        ns = min(ns, OUTLIER_CAP * self.inline_below_ns)
        self._costs[kind] = ns if previous is None else previous + SMOOTHING * (ns - previous)

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def abandon_all(self) -> None:
        """Every running job stops at its next step (the grace period is over)."""
        self._closing.set()

    def shutdown(self) -> None:
        self.abandon_all()
        self.executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class _Work:
    abandoned: threading.Event
    deadline: float | None
    closing: threading.Event


_current = threading.local()


def stop_if_abandoned() -> None:
    """Between the steps of long work on a pool thread: raise when nobody waits for it any
    more (Abandoned), its deadline passed (DeadlineExceeded) or the server is closing. A no-op
    outside a pool job."""
    work: _Work | None = getattr(_current, "work", None)
    if work is None:
        return
    if work.abandoned.is_set() or work.closing.is_set():
        raise Abandoned("every caller of this work is gone")
    if work.deadline is not None and time.monotonic() >= work.deadline:
        raise DeadlineExceeded("the deadline passed while the call was running")
