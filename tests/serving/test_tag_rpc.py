"""The Tag RPC on a real server: per-label probabilities decided by per-label thresholds."""

import json
import subprocess
import sys

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from serving.client import Client, ClientError
from serving.formats.idx import write_idx
from serving.repository import Manifest, ManifestError
from tests.conftest import ROOT
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import classifier_manifest, publish_classifier, publish_tagger

THRESHOLDS = [0.2, 0.5, 0.8, 0.5, 0.95, 0.05]


@pytest.fixture(scope="module")
def tag_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("tagging") / "repo"
    publish_tagger(repo, "tagger", THRESHOLDS)
    publish_classifier(repo, "classifier")
    with ServerProcess(repo) as server:
        server.repository = repo
        yield server


def test_tag_applies_the_models_thresholds(tag_server):
    pixels = np.random.default_rng(0).integers(0, 256, (16, 28, 28)).astype(np.uint8)
    session = ort.InferenceSession(str(tag_server.repository / "tagger" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    expected = session.run(["probabilities"], {"pixels": pixels[:, None].astype(np.float32)})[0]
    with Client(tag_server.target) as client:
        result = client.tag("tagger", pixels=pixels, top_k=2)
        overridden = client.tag("tagger", pixels=pixels, threshold=0.5)
    probs = np.array([r["probabilities"] for r in result["results"]])
    np.testing.assert_allclose(probs, expected, atol=1e-6, rtol=0)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert not np.allclose(probs.sum(axis=1), 1)  # independent labels, not a distribution
    np.testing.assert_allclose(result["thresholds"], THRESHOLDS, atol=1e-7)
    for row, item in zip(probs, result["results"], strict=True):
        want = {f"tag-{i}" for i, p in enumerate(row) if p >= THRESHOLDS[i]}
        assert {t["label"] for t in item["tags"]} == want
        shown = [t["probability"] for t in item["tags"]]
        assert shown == sorted(shown, reverse=True)
        assert [t["index"] for t in item["top"]] == list(np.argsort(-row, kind="stable")[:2])
    assert overridden["thresholds"] == [0.5] * len(THRESHOLDS)
    for row, item in zip(probs, overridden["results"], strict=True):
        assert {t["index"] for t in item["tags"]} == set(np.flatnonzero(row >= 0.5))


def test_task_mismatch_and_bad_threshold_are_invalid(tag_server):
    pixels = np.zeros((1, 28, 28), np.uint8)
    with Client(tag_server.target) as client:
        for call in (lambda: client.tag("classifier", pixels=pixels),
                     lambda: client.classify("tagger", pixels=pixels),
                     lambda: client.tag("tagger", pixels=pixels, threshold=1.5)):
            with pytest.raises(ClientError) as caught:
                call()
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert len(client.tag("tagger", pixels=pixels)["results"]) == 1


def test_tag_cli(tag_server, tmp_path):
    idx = tmp_path / "images-idx3-ubyte"
    write_idx(idx, np.zeros((3, 28, 28), np.uint8))
    out = subprocess.run([sys.executable, "-m", "serving.client", "--target", tag_server.target,
                          "tag", "--model", "tagger", "--idx", str(idx), "--index", "0:3"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["results"]) == 3 and "tags" in result["results"][0]


def test_thresholds_must_fit_the_labels():
    data = {**classifier_manifest(3), "name": "t", "task": "tag", "labels": ["a", "b", "c"]}
    for bad in ([0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 1.5, 0.5]):
        with pytest.raises(ManifestError, match="thresholds"):
            Manifest.from_dict({**data, "thresholds": bad,
                                "outputs": [{"name": "probabilities", "dtype": "float32",
                                             "shape": [-1, 3]}]})
