"""Where model runs execute: inline on the event loop once known to be short, else the pool."""

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.batching import BatchingConfig, DynamicBatcher
from serving.errors import DeadlineExceeded
from serving.execution import InferencePool
from serving.runners import load_runner
from serving.runtime.session import SessionConfig
from tests.serving.synthetic import publish_classifier


def threads_of(pool: InferencePool, kind, runs: int, work=lambda: None) -> list[bool]:
    """For each of `runs` runs of one kind: did it run on the event loop's own thread?"""

    async def scenario():
        loop_thread = threading.get_ident()
        inline = []
        for _ in range(runs):
            def job():
                work()
                return threading.get_ident() == loop_thread
            result, _, compute_ns = await pool.run(kind, None, job)
            assert compute_ns > 0
            inline.append(result)
        return inline

    return asyncio.run(scenario())


def test_a_kind_measured_short_runs_inline_from_its_second_run():
    pool = InferencePool(1, inline_below_us=50_000)
    assert threads_of(pool, ("m", 1, 1), 3) == [False, True, True]


def test_long_runs_unnamed_runs_and_inline_off_stay_on_the_pool():
    slow = InferencePool(1, inline_below_us=100)
    assert threads_of(slow, ("m", 1, 1), 3, lambda: time.sleep(0.002)) == [False] * 3
    generous = InferencePool(1, inline_below_us=50_000)
    assert threads_of(generous, None, 3) == [False] * 3  # whole decodes are never named
    off = InferencePool(1, inline_below_us=0)
    assert threads_of(off, ("m", 1, 1), 3) == [False] * 3


def test_a_kind_that_turns_slow_moves_back_to_the_pool():
    pool = InferencePool(1, inline_below_us=1_000)
    durations = iter([0, 0, 0.02, 0.02, 0.02, 0.02])
    inline = threads_of(pool, ("m", 1, 1), 6, lambda: time.sleep(next(durations)))
    assert inline[:3] == [False, True, True] and inline[-1] is False


@pytest.mark.parametrize("inline_below_us", [0, 50_000])
def test_a_passed_deadline_is_deadline_exceeded_and_nothing_runs(inline_below_us):
    pool = InferencePool(1, inline_below_us)
    ran = []

    async def scenario():
        await pool.run(("m", 1, 1), None, lambda: None)  # measured, so inline when allowed
        with pytest.raises(DeadlineExceeded):
            await pool.run(("m", 1, 1), time.monotonic() - 1, lambda: ran.append(1))

    asyncio.run(scenario())
    assert ran == []


def test_an_idle_batcher_runs_a_lone_call_at_once_and_queues_the_calls_behind_it(tmp_path):
    runner = load_runner(publish_classifier(tmp_path, "m", depth=10, hidden=256),
                         SessionConfig())
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (rows, 1, 28, 28)).astype(np.float32)
              for rows in (1, 2, 1, 3, 1, 2, 1, 1)]

    async def scenario():
        batcher = DynamicBatcher(runner.name, BatchingConfig(max_batch_size=16),
                                 InferencePool(1, inline_below_us=0), runner.batch_strategy(),
                                 runner.stats)
        alone = await batcher.submit({"pixels": inputs[0]}, None)
        no_task = batcher._task is None  # answered without the scheduler
        together = await asyncio.gather(*(batcher.submit({"pixels": x}, None)
                                          for x in inputs))
        return alone, no_task, together

    before = runner.stats.execution_count
    alone, no_task, together = asyncio.run(scenario())
    runs = runner.stats.execution_count - before
    assert no_task
    # the first of the eight finds the batcher idle and runs alone; the seven arriving during
    # its run share the next one
    assert runs == 1 + 2
    for x, (outputs, _, _) in zip(inputs, together, strict=True):
        expected = runner.run_graph({"pixels": x}, ["probabilities"])["probabilities"]
        np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(alone[0]["probabilities"], together[0][0]["probabilities"])
