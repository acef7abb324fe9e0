"""Dynamic batching: merged runs, each caller's own slice, queue limits, deadlines, metrics."""

import asyncio
import re
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.inference import grpc_service_pb2_grpc as oip_grpc
from serving.batching import BatchingConfig, DynamicBatcher
from serving.client import Client, ClientError
from serving.execution import InferencePool
from serving.runners import load_runner
from serving.runtime.session import SessionConfig
from tests.serving.server_process import ServerProcess, free_port
from tests.serving.synthetic import publish_classifier


def executions(target: str, model: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stats = oip_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
            oip.ModelStatisticsRequest(name=model), timeout=5)
    return stats.model_stats[0].execution_count


def test_batcher_merges_calls_and_returns_each_its_own_rows(tmp_path):
    path = publish_classifier(tmp_path, "m", depth=10, hidden=256)
    runner = load_runner(path, SessionConfig())
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (rows, 1, 28, 28)).astype(np.float32)
              for rows in (1, 3, 2, 5, 1, 4, 2, 3, 1, 6, 2, 2)]

    async def scenario():
        batcher = DynamicBatcher(runner.name, BatchingConfig(max_batch_size=8,
                                                        max_queue_delay_us=20_000),
                                 InferencePool(2), runner.batch_strategy(),
                                 runner.stats)
        return await asyncio.gather(*(batcher.submit({"pixels": x}, None) for x in inputs))

    before = runner.stats.execution_count
    results = asyncio.run(scenario())
    runs = runner.stats.execution_count - before
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    for x, (outputs, queue_ns, compute_ns) in zip(inputs, results, strict=True):
        expected = session.run(["probabilities"], {"pixels": x})[0]
        np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-6, rtol=0)
        assert queue_ns >= 0 and compute_ns > 0
    assert sum(len(x) for x in inputs) // 8 <= runs < len(inputs)  # merged, never over 8 rows


def test_inputs_of_different_shapes_are_not_merged(tmp_path):
    path = publish_classifier(tmp_path, "m")
    runner = load_runner(path, SessionConfig())

    async def scenario():
        batcher = DynamicBatcher(runner.name, BatchingConfig(max_queue_delay_us=20_000),
                                 InferencePool(1), runner.batch_strategy(),
                                 runner.stats)
        ok = batcher.submit({"pixels": np.zeros((2, 1, 28, 28), np.float32)}, None)
        odd = batcher.submit({"pixels": np.zeros((1, 1, 28, 29), np.float32)}, None)
        return await asyncio.gather(ok, odd, return_exceptions=True)

    ok, odd = asyncio.run(scenario())
    assert ok[0]["probabilities"].shape == (2, 10)
    assert isinstance(odd, Exception)  # ran alone and failed alone


@pytest.fixture(scope="module")
def slow_batching_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("batching") / "repo"
    publish_classifier(repo, "slow", depth=60, hidden=1024)
    metrics_port = free_port()
    # one intra-op thread: a 250-row call takes a tenth of a second or more on a many-core CI
    # machine too, so the calls that must wait behind it do
    with ServerProcess(repo, "--batch-max-size", "64", "--batch-queue-size", "300",
                       "--intra-op-threads", "1",
                       "--metrics-port", str(metrics_port)) as server:
        server.metrics_port = metrics_port
        server.repository = repo
        yield server


def test_concurrent_callers_each_get_their_own_answer(slow_batching_server):
    server = slow_batching_server
    session = ort.InferenceSession(str(server.repository / "slow" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    inputs = [rng.integers(0, 256, (1 + i % 3, 28, 28)).astype(np.uint8) for i in range(32)]
    before = executions(server.target, "slow")
    with Client(server.target) as client, ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda x: client.classify("slow", pixels=x), inputs))
    runs = executions(server.target, "slow") - before
    for x, result in zip(inputs, results, strict=True):
        expected = session.run(["probabilities"], {"pixels": x[:, None].astype(np.float32)})[0]
        got = np.array([r["probabilities"] for r in result["results"]])
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    assert runs < 32, f"{runs} runs for 32 concurrent calls: nothing was batched"


def test_full_queue_is_resource_exhausted_and_the_rest_succeed(slow_batching_server):
    server = slow_batching_server
    blocker = np.zeros((250, 28, 28), np.uint8)  # holds the single run slot for a while
    big = np.zeros((200, 28, 28), np.uint8)  # two of these overflow the 300-row queue
    with Client(server.target) as client, ThreadPoolExecutor(3) as pool:
        client.list_models()
        started = time.perf_counter()
        client.classify("slow", pixels=blocker)
        alone = time.perf_counter() - started
        assert alone > 0.05, f"a 250-row call took {alone:.3f} s: too fast to hold the slot"
        busy = pool.submit(client.classify, "slow", pixels=blocker)
        # the overflow callers arrive while the blocker runs, however fast this machine is
        time.sleep(alone / 4)
        waiting = [pool.submit(client.classify, "slow", pixels=big) for _ in range(2)]
        outcomes = []
        for future in waiting:
            try:
                future.result()
                outcomes.append("OK")
            except ClientError as e:
                outcomes.append(e.code.name)
        busy.result()
    assert sorted(outcomes) == ["OK", "RESOURCE_EXHAUSTED"], outcomes


def test_deadline_passed_in_the_queue_drops_the_work(slow_batching_server):
    server = slow_batching_server
    # two 250-row calls run one after the other in the single run slot (each alone: over the
    # 64-row batch size), a tenth of a second or more each, and the late call queues behind both
    blocker = np.zeros((250, 28, 28), np.uint8)
    with Client(server.target) as client, Client(server.target, timeout=0.1) as hasty, \
            ThreadPoolExecutor(2) as pool:
        client.list_models()
        hasty.list_models()  # both connections open before the clock matters
        before = executions(server.target, "slow")
        busy = [pool.submit(client.classify, "slow", pixels=blocker) for _ in range(2)]
        time.sleep(0.05)
        with pytest.raises(ClientError) as caught:
            hasty.classify("slow", pixels=np.ones((1, 28, 28), np.uint8))
        for call in busy:
            call.result()
        time.sleep(0.3)
        after = executions(server.target, "slow")
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert after - before == 2  # the blockers' runs only: the late call never ran


def test_prometheus_metrics(slow_batching_server):
    server = slow_batching_server
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    not_found = re.compile(r'smallserve_requests_total\{api="smallserve\.v1",code="NOT_FOUND",'
                           r'method="Classify",model=""\} ([0-9.]+)')

    def scrape() -> str:
        return urllib.request.urlopen(url, timeout=5).read().decode()

    def errors_counted(text: str) -> float:
        found = not_found.search(text)
        return float(found.group(1)) if found else 0.0

    with Client(server.target) as client:
        client.classify("slow", pixels=np.zeros((3, 28, 28), np.uint8))
        before = errors_counted(scrape())
        for i in range(1, 6):
            with pytest.raises(ClientError):
                client.classify("nope", pixels=np.zeros((1, 28, 28), np.uint8))
            # counted by the time the caller sees the error, not some moment later
            assert errors_counted(scrape()) == before + i
    text = scrape()
    assert 'smallserve_requests_total{api="smallserve.v1",code="OK",method="Classify",' \
           'model="slow"}' in text
    assert 'smallserve_batch_size_bucket{le="4.0",model="slow"}' in text
    assert 'smallserve_request_seconds_bucket' in text and "smallserve_queue_seconds" in text
    assert "smallserve_models_loaded 1.0" in text and "smallserve_ready 1.0" in text


class SlowRuns:
    """A batch strategy whose runs take RUN_SECONDS and count how many overlap."""

    RUN_SECONDS = 0.2

    def __init__(self) -> None:
        self.running = self.most = 0
        self.lock = threading.Lock()

    def rows(self, payload):
        return 1

    def signature(self, payload):
        return payload  # calls of different payloads never merge

    def run(self, payloads):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.RUN_SECONDS)
        with self.lock:
            self.running -= 1
        return list(payloads)

    def inline_kind(self, rows):
        return None  # always on the pool

    def record_execution(self, rows):
        pass


@pytest.mark.parametrize("instances", [1, 2, 3])
def test_batch_instances_runs_that_many_batches_at_once(instances):
    """--batch-instances N: N batches of one model run at the same time, never more."""
    strategy = SlowRuns()
    pool = InferencePool(4)
    batcher = DynamicBatcher("m", BatchingConfig(instances=instances), pool, strategy, strategy)

    async def calls():
        return [a[0] for a in await asyncio.gather(*(batcher.submit(i, None) for i in range(3)))]

    try:
        answers = asyncio.run(calls())
    finally:
        pool.shutdown()
    assert answers == [0, 1, 2]
    assert strategy.most == instances  # 0.2 s each: sequential runs could never overlap
