"""Train a tiny multi-digit tagger through the CLI -> python -m serving on a real port -> Tag.

Served probabilities must equal in-process onnxruntime to 1e-6, lie in [0, 1], and the tags
must follow the per-label thresholds the trainer tuned and wrote into the manifest.
"""

import io
import json
import subprocess
import sys

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.inference import grpc_service_pb2_grpc as oip_grpc
from serving.client import Client
from tests.conftest import ROOT
from tests.serving.server_process import ServerProcess
from training.data.mnist import load_mnist
from training.data.multidigit import generate_canvases

NAME = "digits"


@pytest.fixture(scope="module")
def tagger_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tagger-e2e")
    repo = root / "repo"
    cmd = [sys.executable, "-m", "training", "tagger", "--epochs", "2",
           "--train-canvases", "400", "--val-canvases", "100", "--test-canvases", "100",
           "--repository", str(repo), "--name", NAME, "--checkpoint-dir", str(root / "ckpt"),
           "--seed", "0", "--quiet"]
    trained = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    with ServerProcess(repo) as server:
        server.version_dir = repo / NAME / "1"
        server.manifest = json.loads((server.version_dir / "manifest.json").read_text())
        yield server


@pytest.fixture(scope="module")
def canvases():
    """Fresh canvases of the bundled TEST digits: nothing the tagger trained on."""
    return generate_canvases(load_mnist(None).test, 48, seed=123)


def in_process(version_dir, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(version_dir / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"pixels": pixels.astype(np.float32)})[0]


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_served_tags_match_onnxruntime_and_the_thresholds(tagger_server, canvases):
    images = canvases.images
    expected = in_process(tagger_server.version_dir, images[:, None])
    thresholds = np.array(tagger_server.manifest["thresholds"], dtype=np.float32)
    labels = tagger_server.manifest["labels"]
    with Client(tagger_server.target) as client:
        assert client.list_models() == [
            {"name": NAME, "task": "tag", "versions": [1], "latest_version": 1}]
        result = client.tag(NAME, pixels=images, top_k=3)
    probs = np.array([r["probabilities"] for r in result["results"]])
    np.testing.assert_allclose(probs, expected, atol=1e-6, rtol=0)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert not np.allclose(probs.sum(axis=1), 1, atol=1e-2)
    np.testing.assert_allclose(result["thresholds"], thresholds, atol=1e-7)
    for row, item in zip(probs, result["results"], strict=True):
        assert {t["label"] for t in item["tags"]} == {
            labels[i] for i in np.flatnonzero(row >= thresholds)}
        assert [t["index"] for t in item["top"]] == list(np.argsort(-row, kind="stable")[:3])


def test_png_uploads_give_the_same_probabilities(tagger_server, canvases):
    images = canvases.images[:8]
    expected = in_process(tagger_server.version_dir, images[:, None])
    with Client(tagger_server.target) as client:
        result = client.tag(NAME, images=[png(im) for im in images])
    np.testing.assert_allclose([r["probabilities"] for r in result["results"]], expected,
                               atol=1e-6, rtol=0)


def test_open_inference_protocol_serves_the_same_tagger(tagger_server, canvases):
    pixels = canvases.images[:5, None].astype(np.uint8)
    request = oip.ModelInferRequest(model_name=NAME)
    request.inputs.add(name="pixels", datatype="UINT8", shape=list(pixels.shape))
    request.raw_input_contents.append(pixels.tobytes())
    request.outputs.add(name="probabilities")
    with grpc.insecure_channel(tagger_server.target) as channel:
        response = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert [o.name for o in response.outputs] == ["probabilities"]
    assert list(response.outputs[0].shape) == [5, 10]
    probs = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(5, 10)
    np.testing.assert_allclose(probs, in_process(tagger_server.version_dir, pixels),
                               atol=1e-6, rtol=0)
