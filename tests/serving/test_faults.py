"""Faults on a real server: broken versions, a deleted model, a publisher killed mid-way, calls
whose deadline passes in the queue, and SIGTERM under load."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import onnx
import pytest

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.inference import grpc_service_pb2_grpc as oip_grpc
from serving.client import Client, ClientError
from serving.client.messages import classify_request
from serving.repository import VersionWriter, model_names, version_numbers
from serving.repository.publish import STAGING_PREFIX
from tests.conftest import ROOT
from tests.serving.hand_versions import publish_by_hand, wait_for
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import classifier_graph, classifier_manifest, publish_classifier

PIXELS = np.zeros((2, 28, 28), np.uint8)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("faults") / "repo"
    for name in ("m", "doomed", "pub"):
        publish_classifier(repo, name)
    with ServerProcess(repo, "--poll-interval", "0.2") as s:
        s.repository = repo
        yield s


def test_broken_versions_are_refused_reported_and_the_old_one_serves(server):
    model_dir = server.repository / "m"
    manifest = json.loads((model_dir / "1" / "manifest.json").read_text())
    good = (model_dir / "1" / "model.onnx").read_bytes()
    # version 2: garbage with a correct sha256 (VersionWriter hashes what it is given)
    with VersionWriter(server.repository, "m") as w:
        (w.path / "model.onnx").write_bytes(os.urandom(4096))
        assert w.commit(classifier_manifest())[0] == 2
    # version 3: a good graph whose manifest states another sha256
    publish_by_hand(model_dir, 3, {"model.onnx": good},
                    {**manifest, "version": 3,
                     "files": {"model.onnx": {"sha256": "0" * 64, "bytes": len(good)}}})
    wait_for(lambda: "version 2 not loaded" in server.log and "version 3 not loaded"
             in server.log, what="both versions refused")
    with Client(server.target) as client:
        assert client.classify("m", pixels=PIXELS)["version"] == 1
        errors = client.metadata("m")["version_errors"]
        assert [e["version"] for e in errors] == [3, 2]
        assert "sha256 of model.onnx" in errors[0]["reason"]
        assert "model.onnx" in errors[1]["reason"] and "sha256" not in errors[1]["reason"]
        with pytest.raises(ClientError) as caught:
            client.classify("m", pixels=PIXELS, version=2)
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(server.target) as channel:
        index = oip_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
            oip.RepositoryIndexRequest(), timeout=5)
    states = {(m.name, m.version): (m.state, m.reason) for m in index.models}
    assert states[("m", "1")] == ("READY", "")
    assert states[("m", "3")][0] == "UNAVAILABLE" and "sha256" in states[("m", "3")][1]
    # a good version 4 is served; the refused ones stay reported until they are deleted
    publish_classifier(server.repository, "m", seed=4)
    with Client(server.target) as client:
        wait_for(lambda: client.classify("m", pixels=PIXELS)["version"] == 4,
                 what="version 4 served")
        assert [e["version"] for e in client.metadata("m")["version_errors"]] == [3, 2]
        shutil.rmtree(model_dir / "2")
        shutil.rmtree(model_dir / "3")
        wait_for(lambda: client.metadata("m")["version_errors"] == [],
                 what="deleted versions forgotten")


def test_a_model_deleted_while_serving_is_not_found_and_the_rest_goes_on(server):
    codes, stop = [], threading.Event()

    def hammer(name):
        with Client(server.target, timeout=10) as client:
            while not stop.is_set():
                try:
                    client.classify(name, pixels=PIXELS)
                    codes.append((name, "OK"))
                except ClientError as e:
                    codes.append((name, e.code.name))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in ("doomed", "doomed", "m")]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        shutil.rmtree(server.repository / "doomed")
        with Client(server.target) as client:
            wait_for(lambda: "doomed" not in [m["name"] for m in client.list_models()],
                     what="the model unloaded")
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(codes) <= {("doomed", "OK"), ("doomed", "NOT_FOUND"), ("m", "OK")}, set(codes)
    assert ("doomed", "NOT_FOUND") in codes and ("m", "OK") in codes
    assert server.health() == "SERVING" and "Traceback" not in server.log


KILLED_PUBLISHER = """
import sys, time
import onnx
from serving.repository import VersionWriter
from tests.serving.synthetic import classifier_graph
with VersionWriter(sys.argv[1], sys.argv[2]) as w:
    onnx.save(classifier_graph(), w.path / "model.onnx")
    (w.path / "half-written.bin").write_bytes(b"x" * 1000)
    print(w.path, flush=True)
    time.sleep(120)  # SIGKILL arrives here, mid-publication
"""


def test_a_publisher_killed_mid_way_leaves_no_version_and_the_next_one_works(server):
    repo, model_dir = server.repository, server.repository / "pub"
    before = version_numbers(model_dir)
    trainer = subprocess.Popen([sys.executable, "-c", KILLED_PUBLISHER, str(repo), "pub"],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    staging = trainer.stdout.readline().strip()
    trainer.send_signal(signal.SIGKILL)
    assert trainer.wait(10) == -signal.SIGKILL
    staged = model_dir / os.path.basename(staging)
    assert staged.is_dir() and staged.name.startswith(STAGING_PREFIX)  # what a kill leaves
    assert version_numbers(model_dir) == before and "pub" in model_names(repo)
    time.sleep(0.5)  # a few repository scans
    with Client(server.target) as client:
        models = {m["name"]: m["versions"] for m in client.list_models()}
        assert models["pub"] == before
        # the next publication takes the next number and is served
        new = publish_classifier(repo, "pub", seed=7)
        assert new.name == str(before[-1] + 1)
        wait_for(lambda: client.classify("pub", pixels=PIXELS)["version"] == before[-1] + 1,
                 what="the next version served")
    assert staged.is_dir()  # a fresh staging folder may belong to a live publisher: kept...
    old = time.time() - 2 * 86400
    os.utime(staged, (old, old))
    with VersionWriter(repo, "pub") as w:  # ...until it is old enough to be abandoned
        onnx.save(classifier_graph(), w.path / "model.onnx")
        w.commit(classifier_manifest())
    assert not staged.exists()
    assert "Traceback" not in server.log and STAGING_PREFIX not in server.log


# -- a slow model on one worker: deadlines in the queue, SIGTERM under load ------------------

def publish_slow(repo, name: str, batching: bool) -> None:
    with VersionWriter(repo, name) as w:
        onnx.save(classifier_graph(depth=100, hidden=1024), w.path / "model.onnx")
        manifest = classifier_manifest()
        manifest["serving"] = {"dynamic_batching": {"enabled": batching}}
        w.commit(manifest)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """One inference worker and a model whose batch of 1024 takes about a second."""
    repo = tmp_path_factory.mktemp("slow-faults") / "repo"
    publish_slow(repo, "slow", batching=True)
    publish_slow(repo, "slow-unbatched", batching=False)
    with ServerProcess(repo, "--workers", "1", "--grace-period", "60") as s:
        yield s


def statistics(target: str, name: str) -> tuple[int, int]:
    with grpc.insecure_channel(target) as channel:
        stats = oip_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
            oip.ModelStatisticsRequest(name=name), timeout=10).model_stats[0]
    return stats.execution_count, stats.inference_count


def classify(target: str, name: str, rows: int, timeout: float):
    with grpc.insecure_channel(target) as channel:
        stub = channel.unary_unary("/smallserve.v1.ModelService/Classify")
        return stub(classify_request(name, pixels=np.zeros((rows, 28, 28), np.uint8))
                    .SerializeToString(), timeout=timeout)


@pytest.mark.parametrize("name", ["slow", "slow-unbatched"])
def test_a_call_whose_deadline_passes_in_the_queue_is_dropped(slow_server, name):
    """While a long call holds the only worker, a call with a short deadline waits, gets
    DEADLINE_EXCEEDED, and never runs: the model's execution count moves by one, not two."""
    executions, inferences = statistics(slow_server.target, name)
    long_call = threading.Thread(target=classify, args=(slow_server.target, name, 1024, 60))
    long_call.start()
    time.sleep(0.3)  # the long call is on the worker now
    with pytest.raises(grpc.RpcError) as caught:
        classify(slow_server.target, name, 2, timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    long_call.join()
    time.sleep(0.5)  # room for the dropped call to run, were it going to
    assert statistics(slow_server.target, name) == (executions + 1, inferences + 1024)


def test_sigterm_under_load_drains_every_call_in_flight_and_exits_0(slow_server):
    """Calls queued when SIGTERM arrives all complete; calls made after it are refused with
    UNAVAILABLE (not cut off or left hanging); the process exits 0."""
    in_flight, late, outcomes = [], [], {}

    def call(key, name):
        try:
            classify(slow_server.target, name, 64, timeout=60)
            outcomes[key] = "OK"
        except grpc.RpcError as e:
            outcomes[key] = e.code().name

    for i in range(12):  # ~12 runs of 64 rows on one worker: about a second of queued work
        t = threading.Thread(target=call, args=(i, "slow" if i % 2 else "slow-unbatched"))
        t.start()
        in_flight.append(t)
    time.sleep(0.5)  # every call has reached the server; most are queued
    slow_server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    for i in range(4):
        t = threading.Thread(target=call, args=(f"late-{i}", "slow"))
        t.start()
        late.append(t)
    code = slow_server.process.wait(90)
    for t in in_flight + late:
        t.join()
    assert code == 0, slow_server.log[-3000:]
    assert [outcomes[i] for i in range(12)] == ["OK"] * 12
    assert {outcomes[f"late-{i}"] for i in range(4)} == {"UNAVAILABLE"}
    assert "shutting down" in slow_server.log and "stopped" in slow_server.log
