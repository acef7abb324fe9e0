"""The step scheduler's admission: calls admitted at one step are begun together, and one whose
encoding fails fails alone while the others are decoded."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.decoding.greedy import GreedySearch
from serving.decoding.scheduler import StepScheduler
from serving.decoding.search import Hypothesis, Search
from serving.errors import DeadlineExceeded
from serving.execution import InferencePool

BOS, EOS, VOCAB, SOURCE = 0, 1, 6, 3


class Counting:
    def __init__(self) -> None:
        self.rows: list[int] = []

    def record_execution(self, rows: int) -> None:
        self.rows.append(rows)


class Strategy:
    """Calls are ints: a greedy sentence that emits `length` tokens; a negative one cannot
    be encoded."""

    def __init__(self) -> None:
        self.begun: list[list[int]] = []

    def rows(self, payload: int) -> int:
        return 1

    def begin(self, payloads: list[int]) -> list[Search]:
        self.begun.append(list(payloads))
        if any(p < 0 for p in payloads):
            raise ValueError("cannot encode a negative call")
        return [GreedySearch(np.full((1, 1), p, np.float32), np.zeros((1, SOURCE, 1), np.float32),
                             np.ones((1, SOURCE), bool), BOS, EOS, np.array([p + 1]))
                for p in payloads]

    def finish(self, payload: int, hypotheses: list[Hypothesis]) -> list[int]:
        return hypotheses[0].tokens

    def step(self, prev, state, memory, mask):
        # token 2 until the state (the call's length, counting down) runs out, then EOS
        log_probs = np.full((len(prev), VOCAB), -10.0, np.float32)
        log_probs[np.arange(len(prev)), np.where(state[:, 0] > 0, 2, EOS)] = 0.0
        attention = np.full(mask.shape, 1 / mask.shape[1], np.float32)
        return log_probs, state - 1, attention


def test_a_call_whose_encoding_fails_fails_alone_beside_those_begun_with_it():
    strategy = Strategy()
    pool = InferencePool(1)
    scheduler = StepScheduler("m", strategy, pool, Counting())
    held = threading.Event()

    async def scenario():
        loop = asyncio.get_running_loop()
        # the scheduler's one worker is busy, so all three calls wait for the same admission
        blocker = loop.run_in_executor(pool.executor, held.wait)
        calls = [asyncio.ensure_future(scheduler.submit(p, None, caller=str(p)))
                 for p in (2, -1, 4)]
        await asyncio.sleep(0.05)
        held.set()
        await blocker
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        short, bad, long = asyncio.run(scenario())
    finally:
        held.set()
        pool.executor.shutdown(wait=True)
    assert short[0] == [2, 2] and long[0] == [2, 2, 2, 2]
    assert isinstance(bad, ValueError)
    # begun together once, then one by one so that only the bad call failed
    assert strategy.begun == [[2, -1, 4], [2], [-1], [4]]


@pytest.mark.parametrize("lengths", [[3], [1, 5, 2]])
def test_calls_begun_together_get_what_each_gets_alone(lengths):
    strategy = Strategy()
    pool = InferencePool(1)
    scheduler = StepScheduler("m", strategy, pool, Counting())

    async def each(payloads):
        return await asyncio.gather(*(scheduler.submit(p, None, caller=str(p))
                                      for p in payloads))

    try:
        together = asyncio.run(each(lengths))
        alone = [asyncio.run(each([p]))[0] for p in lengths]
    finally:
        pool.executor.shutdown(wait=True)
    assert [r[0] for r in together] == [r[0] for r in alone] == [[2] * p for p in lengths]


class NothingToDecodeForZero(Strategy):
    """As Strategy, but a call 0 has a length limit of 0: its search is done at once."""

    def begin(self, payloads: list[int]) -> list[Search]:
        searches = super().begin([max(p, 1) for p in payloads])
        return [GreedySearch(np.zeros((1, 1), np.float32), np.zeros((1, SOURCE, 1), np.float32),
                             np.ones((1, SOURCE), bool), BOS, EOS, np.array([0]))
                if p == 0 else search for p, search in zip(payloads, searches, strict=True)]


class SlowSteps(Strategy):
    def step(self, prev, state, memory, mask):
        time.sleep(0.002)
        return super().step(prev, state, memory, mask)


def test_a_call_with_nothing_to_decode_is_answered_at_admission_beside_others():
    pool = InferencePool(1)
    scheduler = StepScheduler("m", NothingToDecodeForZero(), pool, Counting())

    async def scenario():
        return await asyncio.gather(*(scheduler.submit(p, None, caller=str(p))
                                      for p in (3, 0, 2)))

    try:
        results = asyncio.run(scenario())
    finally:
        pool.executor.shutdown(wait=True)
    assert [r[0] for r in results] == [[2, 2, 2], [], [2, 2]]


def test_cancelled_and_overdue_calls_leave_the_step_batch_while_the_others_decode():
    """Calls are looked at for leaving only when one was cancelled or a deadline passed, not
    at every step: both must still leave within a few steps, and the call left must end as it
    does alone."""
    strategy = SlowSteps()
    pool = InferencePool(1)
    recorder = Counting()
    scheduler = StepScheduler("m", strategy, pool, recorder)

    async def scenario():
        kept = asyncio.ensure_future(scheduler.submit(60, None, caller="kept"))
        cancelled = asyncio.ensure_future(scheduler.submit(1000, None, caller="cancelled"))
        overdue = asyncio.ensure_future(scheduler.submit(1000, time.monotonic() + 0.08,
                                                         caller="overdue"))
        await asyncio.sleep(0.02)
        cancelled.cancel()
        results = await asyncio.gather(kept, cancelled, overdue, return_exceptions=True)
        return results, list(recorder.rows)

    try:
        (kept, cancelled, overdue), rows = asyncio.run(scenario())
    finally:
        pool.executor.shutdown(wait=True)
    assert kept[0] == [2] * 60
    assert isinstance(cancelled, asyncio.CancelledError)
    assert isinstance(overdue, DeadlineExceeded)
    # three rows once all joined, two after the cancel (20 ms: ~10 steps of 2 ms), then the
    # kept call's alone after the deadline (80 ms: ~40 steps), long before their ends
    full = rows.index(3)
    assert len(rows) == 61 and rows[-1] == 1
    assert rows[full:] == sorted(rows[full:], reverse=True)
    assert rows.count(3) < 30 and sum(r > 1 for r in rows) < 55
