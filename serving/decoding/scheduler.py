"""Iteration-level batching of decodes (the scheduling of Orca and continuous-batching
servers), over an encoder + decoder-step model.

One step batch runs per model version, one decoder step at a time, on a worker of the pool.
Between steps it releases the calls whose sentences have all ended, drops the calls nobody
waits for any more (cancelled, past their deadline, or the server closing), and admits calls
that arrived meanwhile: each is encoded and its rows (sentences x beam) join the next step.
Rows of different source lengths share a step through padding and masks. A short call thus
finishes in its own few steps even while long ones run, and every step runs as many rows as
are waiting. Greedy calls share one batch of rows (serving.decoding.greedy.GreedyRows): they join
it at admission and their rows leave it as their sentences end, so a step's cost does not grow
with the number of calls in it.

Admission is fair between callers: pending calls are taken round-robin by caller (the
connection they came on), and while others wait no caller may hold more than `caller_share`
of the step batch's rows.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from serving.batching import RunRecorder
from serving.decoding.search import Hypothesis, Search, Stepper
from serving.errors import Abandoned, DeadlineExceeded, TooLarge
from serving.execution import InferencePool

StepOutputs = tuple[np.ndarray, np.ndarray, np.ndarray]


class StepStrategy(Protocol):
    """What a sequence model supplies to have its calls decoded step by step together."""

    def rows(self, payload: Any) -> int:
        """Decoder rows the call adds to a step: its sequences x beam."""

    def begin(self, payloads: list[Any]) -> list[Search]:
        """Encode the inputs of calls admitted at one step (on the scheduler's worker) and
        start their searches, one per call."""

    def finish(self, payload: Any, hypotheses: list[Hypothesis]) -> Any:
        """The call's result from its ended search."""

    def step(self, prev: np.ndarray, state: np.ndarray, memory: np.ndarray,
             mask: np.ndarray) -> StepOutputs: ...


@dataclass(frozen=True)
class SchedulingConfig:
    max_rows: int = 128  # decoder rows per step (a larger single call runs alone)
    # rows beyond max_rows kept for small calls (a few greedy sentences): they join at the
    # next step even when large calls fill the batch, so they never wait for one to end
    small_call_rows: int = 16
    max_queue_rows: int = 16384  # rows waiting to be admitted, per model version
    caller_share: float = 0.5  # most of a step batch one caller may hold while others wait


@dataclass
class _Call:
    payload: Any
    rows: int
    caller: str
    future: asyncio.Future[tuple[Any, int, int]]
    loop: asyncio.AbstractEventLoop
    deadline: float | None
    enqueued_ns: int
    abandoned: threading.Event = field(default_factory=threading.Event)
    search: Search | None = None
    stepper: Stepper | None = None  # what steps its rows: its search, or a shared batch
    started_ns: int = 0

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        self.loop.call_soon_threadsafe(self.settle, value, error)

    def settle(self, value: Any, error: BaseException | None) -> None:
        """On the call's event loop."""
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(value)


def _settle_all(calls: list[tuple[_Call, Any]]) -> None:
    for call, value in calls:
        call.settle(value, None)


class StepScheduler:
    def __init__(self, name: str, strategy: StepStrategy, pool: InferencePool,
                 recorder: RunRecorder, config: SchedulingConfig = SchedulingConfig(),
                 inferences: Callable[[Any], int] | None = None) -> None:
        """inferences: what a call counts for in the statistics (its sequences; by default
        its decoder rows)."""
        self.name = name
        self.inferences = inferences or strategy.rows
        self.strategy = strategy
        self.pool = pool
        self.recorder = recorder
        self.config = config
        self._lock = threading.Lock()
        self._pending: dict[str, deque[_Call]] = {}  # per caller, in arrival order
        self._pending_rows = 0
        self._active: dict[int, _Call] = {}  # by id() of the call's search
        self._steppers: list[Stepper] | None = None  # of the active calls; None: to gather
        self._next_deadline = math.inf  # no active call's deadline is earlier
        self._abandoned = False  # a call was cancelled since the step loop last looked
        self._running = False
        self._shared: dict[Hashable, Any] = {}  # batches of rows that searches share
        self._memory_key: tuple[int, ...] = ()
        self._memory: tuple[np.ndarray, np.ndarray] | None = None

    def run_now(self, payload: Any, deadline: float | None) -> None:
        """Never: a decode is too long for the event loop (DynamicBatcher.run_now's contract)."""
        return None

    async def submit(self, payload: Any, deadline: float | None,
                     caller: str = "") -> tuple[Any, int, int]:
        """This call's result, with the ns it waited to be admitted and the ns it ran."""
        loop = asyncio.get_running_loop()
        rows = self.strategy.rows(payload)
        call = _Call(payload, rows, caller, loop.create_future(), loop, deadline,
                     time.perf_counter_ns())
        with self._lock:
            if self._pending_rows + rows > self.config.max_queue_rows:
                raise TooLarge(f"model {self.name} has {self._pending_rows} decoder rows "
                               f"waiting; the queue holds {self.config.max_queue_rows}")
            self._pending.setdefault(caller, deque()).append(call)
            self._pending_rows += rows
            start = not self._running
            self._running = True
        if start:
            loop.run_in_executor(self.pool.executor, self._run)
        try:
            return await call.future
        except asyncio.CancelledError:
            call.abandoned.set()  # its rows leave the step batch at the next step
            self._abandoned = True
            raise

    # -- the step loop, on one worker of the pool ------------------------------------------

    def _run(self) -> None:
        try:
            while self._admit() or self._active:
                self._drop_gone()
                if self._active:
                    self._step()
                    self._release([search for stepper in self._steppers or ()
                                   for search in stepper.take_ended()])
        except BaseException as e:  # a failed step fails the calls in it, never the server
            for call in self._active.values():
                call.resolve(error=e)
            self._active, self._steppers = {}, None
            self._shared, self._memory = {}, None
            with self._lock:
                self._running = False
                restart = bool(self._pending)
            if restart:  # calls that arrived meanwhile still get their turn
                with self._lock:
                    self._running = True
                self._run()

    def _admit(self) -> bool:
        """Take pending calls into the step batch, round-robin by caller, within the row
        budget; encode each. False when nothing runs or waits any more (the loop ends)."""
        if self._active and not self._pending:
            # most steps: nothing arrived (a call appended meanwhile joins at the next step)
            return True
        admitted = []
        with self._lock:
            rows = sum(c.rows for c in self._active.values())
            held: dict[str, int] = {}
            for c in self._active.values():
                held[c.caller] = held.get(c.caller, 0) + c.rows
            progress = True
            while progress and self._pending:
                progress = False
                for caller in list(self._pending):
                    queue = self._pending[caller]
                    others_wait = len(self._pending) > 1
                    # a caller's first call that fits: its small calls never wait behind its
                    # own large ones (many clients may share one proxy's connection)
                    call = next((c for c in queue if self._fits(c, rows, not admitted)), None)
                    if call is None:
                        continue
                    if others_wait and held.get(caller) and held[caller] + call.rows > \
                            self.config.caller_share * self.config.max_rows:
                        continue
                    queue.remove(call)
                    if not queue:
                        del self._pending[caller]
                    self._pending_rows -= call.rows
                    rows += call.rows
                    held[caller] = held.get(caller, 0) + call.rows
                    admitted.append(call)
                    progress = True
            if not admitted and not self._active and not self._pending:
                self._running = False
                # idle: the shared rows' arrays (sized for the largest call) are let go
                self._shared, self._memory = {}, None
                return False
        starting = self._still_waited_for(admitted)
        now = time.perf_counter_ns()
        for call in starting:
            call.started_ns = now
        if starting:
            self._begin(starting)
        return True

    def _begin(self, calls: list[_Call]) -> None:
        """The calls' searches start and join the step batch; one whose encoding fails fails
        alone."""
        try:
            searches = self.strategy.begin([call.payload for call in calls])
        except Exception as e:
            if len(calls) == 1:
                calls[0].resolve(error=e)
                return
            for call in calls:
                self._begin([call])
            return
        for call, search in zip(calls, searches, strict=True):
            call.search = search
            call.stepper = search.stepper(self._shared)
            self._active[id(search)] = call
            if call.deadline is not None:
                self._next_deadline = min(self._next_deadline, call.deadline)
        self._steppers = None
        self._release([search for search in searches if search.done])  # nothing to decode

    def _fits(self, call: _Call, rows: int, first: bool) -> bool:
        """Whether the call's rows fit beside `rows` running ones; a call larger than the
        whole budget runs alone, when nothing else does."""
        room = self.config.max_rows
        if call.rows <= self.config.small_call_rows:
            room += self.config.small_call_rows
        return rows + call.rows <= room or (not rows and first)

    def _gone(self, call: _Call, now: float, closing: bool) -> bool:
        """Resolve and report calls nobody waits for (their rows are dropped)."""
        if call.abandoned.is_set() or closing:
            call.resolve(error=Abandoned("every caller of this work is gone"))
            return True
        if call.deadline is not None and now >= call.deadline:
            call.resolve(error=DeadlineExceeded("the deadline passed while the call was "
                                                "decoding"))
            return True
        return False

    def _still_waited_for(self, calls: list[_Call]) -> list[_Call]:
        """The calls somebody still waits for; the others are resolved and their rows leave."""
        still = []
        now, closing = time.monotonic(), self.pool.closing  # once per step, not per call
        for call in calls:
            if not self._gone(call, now, closing):
                still.append(call)
            elif call.search is not None:
                call.search.leave()
        return still

    def _drop_gone(self) -> None:
        """The active calls nobody waits for any more leave; looked for only when one was
        cancelled, the earliest deadline passed or the server is closing, not at every
        step."""
        if not (self._abandoned or time.monotonic() >= self._next_deadline
                or self.pool.closing):
            return
        self._abandoned = False  # before looking: a call cancelled meanwhile is seen next step
        still = self._still_waited_for(list(self._active.values()))
        if len(still) < len(self._active):
            self._active = {id(call.search): call for call in still}
            self._steppers = None
        self._next_deadline = min((c.deadline for c in still if c.deadline is not None),
                                  default=math.inf)

    def _step(self) -> None:
        if self._steppers is None:
            # one stepper per search, or one for all the searches that share a batch of rows
            self._steppers = list({id(c.stepper): c.stepper for c in self._active.values()
                                   if c.stepper is not None}.values())
        steppers, parts = self._steppers, [s.inputs() for s in self._steppers]
        if not all(len(part[0]) for part in parts):  # a shared batch whose rows all ended
            kept = [i for i, part in enumerate(parts) if len(part[0])]
            steppers = self._steppers = [steppers[i] for i in kept]
            parts = [parts[i] for i in kept]
        if not steppers:
            return
        memory, mask = self._padded_memory(tuple(s.rows_version for s in steppers), parts)
        prev = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        state = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        log_probs, new_state, attention = self.strategy.step(prev, state, memory, mask)
        self.recorder.record_execution(len(prev))
        start = 0
        for stepper, part in zip(steppers, parts, strict=True):
            end = start + len(part[0])
            stepper.advance(log_probs[start:end], new_state[start:end],
                            attention[start:end, :part[3].shape[1]])
            start = end

    def _padded_memory(self, key: tuple[int, ...],
                       parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, np.ndarray]:
        """Every row's memory and mask in one batch, padded to the longest source; rebuilt
        only when a stepper's rows changed (their versions are never reused), not at every
        step."""
        if len(parts) == 1:
            return parts[0][2], parts[0][3]
        if key != self._memory_key or self._memory is None:
            longest = max(p[2].shape[1] for p in parts)
            rows = sum(len(p[2]) for p in parts)
            first = parts[0][2]
            memory = np.zeros((rows, longest, *first.shape[2:]), first.dtype)
            mask = np.zeros((rows, longest), bool)
            start = 0
            for p in parts:
                end = start + len(p[2])
                memory[start:end, :p[2].shape[1]] = p[2]
                mask[start:end, :p[3].shape[1]] = p[3]
                start = end
            self._memory_key, self._memory = key, (memory, mask)
        return self._memory

    def _release(self, ended: list[Search]) -> None:
        """The calls of ended searches get their results."""
        if not ended:
            return
        answered: dict[asyncio.AbstractEventLoop, list[tuple[_Call, Any]]] = {}
        for search in ended:
            call = self._active.pop(id(search))
            if call.stepper is search:  # its own rows: they end with it
                self._steppers = None
            try:
                result = self.strategy.finish(call.payload, search.hypotheses())
            except Exception as e:
                call.resolve(error=e)
                continue
            now = time.perf_counter_ns()
            answered.setdefault(call.loop, []).append(
                (call, (result, call.started_ns - call.enqueued_ns, now - call.started_ns)))
        # one wake-up of each event loop for all the calls a step ended, not one per call
        for loop, calls in answered.items():
            loop.call_soon_threadsafe(_settle_all, calls)
