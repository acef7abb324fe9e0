"""End to end: python -m training caption trains a tiny canvas captioner, exports both graphs
with parity, scores them in onnxruntime and publishes a version in the agreed layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from serving.repository import verify_version
from tests.serving.server_process import ServerProcess
from training.__main__ import main
from training.evaluate_caption import main as evaluate_caption

TINY = ["--train-canvases", "160", "--val-canvases", "24", "--test-canvases", "24",
        "--epochs", "1", "--channels", "4,8,8", "--feature-dim", "8", "--hidden", "16",
        "--embed-dim", "8", "--attention-dim", "8", "--batch-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("caption")
    code = main(["caption", "--repository", str(root / "repo"), "--name", "digits",
                 "--checkpoint-dir", str(root / "runs"), *TINY])
    assert code == 0
    return root, "digits"


def test_version_files_and_manifest_contract(published):
    root, name = published
    version = root / "repo" / name / "1"
    manifest = verify_version(version)
    assert {"encoder.onnx", "decoder_step.onnx", "vocab.txt"} <= set(manifest.files)
    m = json.loads((version / "manifest.json").read_text())
    assert m["task"] == "caption"
    assert m["graphs"] == {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"}
    assert m["inputs"] == [{"name": "pixels", "dtype": "float32", "shape": [-1, 1, 64, 64]}]
    assert m["outputs"] == [{"name": "caption", "dtype": "bytes", "shape": [-1]},
                            {"name": "attention", "dtype": "float32", "shape": [-1, -1, 8, 8]}]
    pre = m["preprocessing"]
    assert pre["kind"] == "image" and pre["color"] == "grayscale" and pre["channels"] == 1
    assert (pre["height"], pre["width"], pre["layout"]) == (64, 64, "NCHW")
    assert pre["input_range"] == [0, 255] and pre["resize"] == "bilinear"
    assert pre["normalization"]["applied_in_graph"] is True
    assert m["grid"]["rows"] == 8 and m["grid"]["cols"] == 8
    tok = m["tokenizer"]
    assert tok["type"] == "vocabulary" and tok["vocab_file"] == "vocab.txt"
    assert tok["join"] == " "
    vocab = (version / "vocab.txt").read_text().splitlines()
    assert [vocab[tok[k]] for k in ("pad_id", "bos_id", "eos_id", "unk_id")] == \
        ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert {"one", "seven"} <= set(vocab)
    assert m["decoding"] == {"default_beam_size": 3, "length_penalty": 0.0, "max_length": 12}
    assert m["parity"]["max_abs_diff"] <= 1e-5
    assert m["parity"]["greedy_tokens"]["mismatches"] == 0
    metrics = m["metrics"]
    for key in ("bleu1", "bleu4", "exact_match", "attention_localisation"):
        assert 0.0 <= metrics[key] <= 1.0 and 0.0 <= metrics["greedy"][key] <= 1.0
    assert metrics["n_test"] == 24
    assert m["training"]["task"] == "caption" and "libraries" in m


def test_exported_graphs_run_as_the_server_runs_them(published):
    root, name = published
    version = root / "repo" / name / "1"
    m = json.loads((version / "manifest.json").read_text())
    enc = ort.InferenceSession(str(version / "encoder.onnx"),
                               providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(version / "decoder_step.onnx"),
                               providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 1, 64, 64)).astype(np.float32)
    memory, state = enc.run(["memory", "state"], {"pixels": pixels})
    assert memory.shape[:2] == (3, m["grid"]["rows"] * m["grid"]["cols"])
    log_probs, _, attention = dec.run(None, {
        "prev_ids": np.full(3, m["tokenizer"]["bos_id"], np.int64), "state": state,
        "memory": memory, "src_mask": np.ones(memory.shape[:2], bool)})
    assert log_probs.shape[1] == m["tokenizer"]["size"]
    np.testing.assert_allclose(attention.sum(1), 1.0, atol=1e-5)


def test_folder_dataset_needs_a_data_dir(tmp_path: Path, capsys):
    assert main(["caption", "--dataset", "folder", "--repository", str(tmp_path)]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_served_figures_equal_the_published_ones(published, capsys):
    """The held-out canvases drawn again from the manifest and captioned by a real server give
    the figures the run recorded from the exported graphs in-process."""
    root, name = published
    version = root / "repo" / name / "1"
    m = json.loads((version / "manifest.json").read_text())["metrics"]
    server = ServerProcess(root / "repo").start()
    try:
        for beam, recorded in (("0", m), ("1", m["greedy"])):
            assert evaluate_caption(["--server", server.target, "--version-dir", str(version),
                                     "--beam-size", beam, "--json"]) == 0
            served = json.loads(capsys.readouterr().out)["served"]
            assert served["n_test"] == m["n_test"]
            for key in ("exact_match", "attention_localisation", "bleu4"):
                assert served[key] == pytest.approx(recorded[key], abs=1e-9), (beam, key)
            assert served["max_attention_sum_error"] <= 1e-5
    finally:
        server.stop()
