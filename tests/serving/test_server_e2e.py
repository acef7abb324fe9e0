"""Train tiny -> export -> python -m serving on a real port -> clients, as a user runs it."""

import asyncio
import io
import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.client import AsyncClient, Client, ClientError
from serving.client.messages import tensor
from serving.formats.idx import write_idx
from serving.repository import VersionWriter, verify_version
from tests.conftest import ROOT
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import publish_classifier


@pytest.fixture(scope="module")
def server(trained_repository, tmp_path_factory):
    repo = tmp_path_factory.mktemp("served") / "repo"
    shutil.copytree(trained_repository, repo)
    with ServerProcess(repo, "--poll-interval", "0.2", "--max-batch-size", "256",
                       "--max-message-bytes", str(512 * 1024)) as s:
        s.repository = repo
        yield s


def in_process_probabilities(version_dir, pixels):
    session = ort.InferenceSession(str(version_dir / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"pixels": pixels.astype(np.float32)})[0]


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_classify_matches_onnxruntime_in_process(server, test_digits):
    assert server.health() == "SERVING"
    assert server.health("smallserve.v1.ModelService") == "SERVING"
    images, labels = test_digits.images[:64], test_digits.labels[:64]
    expected = in_process_probabilities(server.repository / "mnist" / "1", images[:, None])
    with Client(server.target) as client:
        assert client.list_models() == [
            {"name": "mnist", "task": "classify", "versions": [1], "latest_version": 1}]
        for pixels in (images, images.astype(np.float32), images[:, None]):
            result = client.classify("mnist", pixels=pixels, top_k=3)
            probs = np.array([r["probabilities"] for r in result["results"]])
            np.testing.assert_allclose(probs, expected, atol=1e-6, rtol=0)
        assert (result["model"], result["version"]) == ("mnist", 1)
        np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
        top = result["results"][0]["top"]
        assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"]
        assert top[0]["index"] == int(np.argmax(expected[0])) and top[0]["label"] == str(
            top[0]["index"])
        assert (probs.argmax(1) == labels).mean() > 0.75
        # the same digits as PNG files decode to the same pixels, so the same answer
        by_png = client.classify("mnist", images=[png(im) for im in images[:8]])
        np.testing.assert_allclose([r["probabilities"] for r in by_png["results"]],
                                   expected[:8], atol=1e-6, rtol=0)
        meta = client.metadata("mnist")
    assert meta["task"] == "classify" and meta["labels"] == [str(i) for i in range(10)]
    assert meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
    assert meta["providers"] == ["CPUExecutionProvider"]
    assert meta["manifest"]["parity"]["max_abs_diff"] <= 1e-4


def test_cli_prints_json(server, test_digits, tmp_path):
    idx = tmp_path / "digits-idx3-ubyte.gz"
    write_idx(idx, test_digits.images[:5])
    (tmp_path / "digit.png").write_bytes(png(test_digits.images[0]))
    base = [sys.executable, "-m", "serving.client", "--target", server.target]

    def cli(*args):
        return subprocess.run([*base, *args], capture_output=True, text=True, cwd=ROOT)

    health = cli("health")
    assert health.returncode == 0 and json.loads(health.stdout) == {"status": "SERVING"}
    models = cli("models")
    assert models.returncode == 0 and json.loads(models.stdout)[0]["name"] == "mnist"
    by_idx = json.loads(cli("classify", "--model", "mnist", "--idx", str(idx), "--index", "0:3",
                            "--index", "4").stdout)
    assert [r["input"].split("[")[-1] for r in by_idx["results"]] == ["0]", "1]", "2]", "4]"]
    by_png = json.loads(cli("classify", "--model", "mnist", str(tmp_path / "digit.png"),
                            "--top-k", "1").stdout)
    assert by_png["results"][0]["top"][0] == by_idx["results"][0]["top"][0]
    missing = cli("classify", "--model", "nope", str(tmp_path / "digit.png"))
    assert missing.returncode != 0 and "NOT_FOUND" in missing.stderr and missing.stdout == ""


def raw_classify(target: str, request: pb.ClassifyRequest, timeout: float = 10):
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.ModelServiceStub(channel).Classify(request, timeout=timeout)


def request(pixels=None, images=None, name="mnist", version=0, top_k=0):
    r = pb.ClassifyRequest(model=pb.ModelRef(name=name, version=version), top_k=top_k)
    if pixels is not None:
        r.pixels.CopyFrom(pixels)
    r.images.extend(images or [])
    return r


GOOD = np.zeros((2, 28, 28), np.uint8)


@pytest.mark.parametrize("bad, code, words", [
    (request(tensor(np.zeros((2, 27, 28), np.uint8))), "INVALID_ARGUMENT", "shape"),
    (request(tensor(np.zeros((2, 3, 28, 28), np.float32))), "INVALID_ARGUMENT", "shape"),
    (request(pb.Tensor(dtype=pb.FLOAT32, shape=[2, 28, 28], data=b"\0" * 10)),
     "INVALID_ARGUMENT", "bytes"),
    (request(pb.Tensor(dtype=pb.DATA_TYPE_UNSPECIFIED, shape=[1, 28, 28], data=b"\0" * 784)),
     "INVALID_ARGUMENT", "dtype"),
    (request(tensor(np.zeros((0, 28, 28), np.float32))), "INVALID_ARGUMENT", "empty"),
    (request(), "INVALID_ARGUMENT", "exactly one"),
    (request(tensor(GOOD), images=[b"x"]), "INVALID_ARGUMENT", "exactly one"),
    (request(images=[b"not an image at all"]), "INVALID_ARGUMENT", "decoded"),
    (request(images=[b""]), "INVALID_ARGUMENT", "empty"),
    (request(tensor(np.full((1, 28, 28), np.nan, np.float32))), "INVALID_ARGUMENT", "NaN"),
    (request(tensor(np.full((1, 28, 28), np.inf, np.float32))), "INVALID_ARGUMENT", "Inf"),
    (request(tensor(GOOD), top_k=-1), "INVALID_ARGUMENT", "top_k"),
    (request(pb.Tensor(dtype=pb.FLOAT32, data=b"\0" * 4)), "INVALID_ARGUMENT", "no batch axis"),
    (request(tensor(GOOD), name=""), "INVALID_ARGUMENT", "name"),
    (request(tensor(GOOD), name="no-such-model"), "NOT_FOUND", "no-such-model"),
    (request(tensor(GOOD), version=99), "NOT_FOUND", "version 99"),
    (request(tensor(np.zeros((257, 28, 28), np.uint8))), "RESOURCE_EXHAUSTED", "257"),
    (request(tensor(np.zeros((200, 28, 28), np.float32))), "RESOURCE_EXHAUSTED", "larger than"),
])
def test_bad_input_gets_its_status_and_the_server_goes_on(server, bad, code, words):
    with pytest.raises(grpc.RpcError) as caught:
        raw_classify(server.target, bad)
    assert caught.value.code().name == code
    assert words in caught.value.details()
    ok = raw_classify(server.target, request(tensor(GOOD)))
    assert len(ok.results) == 2


def test_reflection_lists_the_services(server):
    with grpc.insecure_channel(server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"smallserve.v1.ModelService", "grpc.health.v1.Health"} <= names


def test_new_version_is_served_without_restart(server, test_digits):
    """A version published while clients call is picked up; no call fails meanwhile."""
    failures, calls, stop = [], [0], threading.Event()

    def hammer():
        with Client(server.target) as client:
            while not stop.is_set():
                try:
                    client.classify("mnist", pixels=test_digits.images[:4])
                    calls[0] += 1
                except ClientError as e:
                    failures.append(e)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        latest = max(int(p.name) for p in (server.repository / "mnist").iterdir()
                     if p.name.isdigit())
        source = server.repository / "mnist" / str(latest)
        manifest = verify_version(source).to_dict()
        with VersionWriter(server.repository, "mnist") as w:
            shutil.copy(source / "model.onnx", w.path / "model.onnx")
            new_version, _ = w.commit(manifest)
        with Client(server.target) as client:
            deadline = time.monotonic() + 20
            while client.classify("mnist", pixels=GOOD)["version"] != new_version:
                assert time.monotonic() < deadline, server.log
                time.sleep(0.1)
            # older versions stay reachable by number
            assert client.classify("mnist", pixels=GOOD, version=latest)["version"] == latest
    finally:
        stop.set()
        thread.join()
    assert failures == [] and calls[0] > 0
    assert f"now serves version {new_version}" in server.log


def test_broken_version_is_skipped_and_logged(server):
    version_dir = server.repository / "mnist" / "1000"
    version_dir.mkdir()
    (version_dir / "manifest.json").write_text("{}")
    time.sleep(1.0)
    with Client(server.target) as client:
        assert client.classify("mnist", pixels=GOOD)["version"] < 1000
    assert "version 1000 not loaded" in server.log
    shutil.rmtree(version_dir)


def test_async_client_concurrent_calls(server, test_digits):
    async def main():
        async with AsyncClient(server.target) as client:
            calls = [client.classify("mnist", pixels=test_digits.images[i:i + 1])
                     for i in range(32)]
            return await asyncio.gather(*calls)

    results = asyncio.run(main())
    with Client(server.target) as client:
        together = client.classify("mnist", pixels=test_digits.images[:32])
    for i, r in enumerate(results):
        np.testing.assert_allclose(r["results"][0]["probabilities"],
                                   together["results"][i]["probabilities"], atol=1e-6)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """A deliberately heavy (but real) ONNX model: a batch of 1024 takes about a second."""
    repo = tmp_path_factory.mktemp("slow") / "repo"
    publish_classifier(repo, "slow", depth=100, hidden=1024)
    with ServerProcess(repo, "--workers", "1", "--grace-period", "30") as s:
        yield s


def test_expired_deadline_is_reported_and_the_server_goes_on(slow_server):
    big = tensor(np.zeros((1024, 28, 28), np.uint8))
    with pytest.raises(grpc.RpcError) as caught:
        raw_classify(slow_server.target, request(big, name="slow"), timeout=0.05)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    ok = raw_classify(slow_server.target, request(tensor(GOOD), name="slow"))
    assert len(ok.results) == 2


def test_sigterm_drains_the_call_in_flight(slow_server):
    big = tensor(np.zeros((1024, 28, 28), np.uint8))
    outcome = {}

    def call():
        try:
            outcome["response"] = raw_classify(slow_server.target, request(big, name="slow"),
                                               timeout=60)
        except grpc.RpcError as e:
            outcome["error"] = e

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.4)  # the call is now running on the server
    assert thread.is_alive()
    code = slow_server.stop(signal.SIGTERM)
    thread.join()
    assert "error" not in outcome, outcome.get("error")
    assert len(outcome["response"].results) == 1024
    assert code == 0
    assert "shutting down" in slow_server.log and "stopped" in slow_server.log
