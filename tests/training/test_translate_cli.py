"""End to end: `python -m training translate` on the bundled toy grammar publishes a version
the server can load, whose attention looks at the aligned source words."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.repository import verify_version
from serving.runners.translator import TranslatorRunner
from serving.runtime.session import SessionConfig
from tests.conftest import ROOT

NAME = "toy-mt"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("translate")
    cmd = [sys.executable, "-m", "training", "translate", "--toy-sizes", "2000,200,200",
           "--epochs", "6", "--repository", str(tmp / "repo"), "--name", NAME,
           "--checkpoint-dir", str(tmp / "runs"), "--parity-sentences", "100", "--seed", "0"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp, result.stdout


def test_version_is_published_complete(published: tuple[Path, str]) -> None:
    tmp, stdout = published
    version = tmp / "repo" / NAME / "1"
    manifest = verify_version(version)  # sha256 of every file, graphs present
    assert manifest.task == "translate"
    assert manifest.graphs == {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"}
    assert set(manifest.files) == {"encoder.onnx", "decoder_step.onnx", "source.model",
                                   "target.model"}
    assert [(t.name, t.dtype, t.shape) for t in manifest.inputs] == [("text", "bytes", [-1])]
    assert [(t.name, t.dtype) for t in manifest.outputs] == [("translation", "bytes"),
                                                             ("attention", "float32")]
    tok = manifest.tokenizer
    assert (tok["type"], tok["source_model"], tok["target_model"]) == (
        "sentencepiece", "source.model", "target.model")
    assert (tok["pad_id"], tok["unk_id"], tok["bos_id"], tok["eos_id"]) == (0, 1, 2, 3)
    assert tok["add_eos_to_source"] is True and tok["add_bos_to_source"] is False
    assert manifest.decoding == {"default_beam_size": 4, "length_penalty": 0.6,
                                 "max_length_ratio": 2.0, "max_length_offset": 10}
    assert manifest.limits == {"max_source_pieces": 100}
    m = manifest.metrics
    assert m["n_test"] == 200 and m["bleu"] > 80 and m["chrf"] > 80
    assert m["bleu_signature"].startswith("nrefs:1|") and "greedy" in m and "beam" in m
    assert "onnxruntime" in m["decoding"] and m["beam"]["beam_size"] == 4
    assert manifest.parity["max_abs_diff"] <= 1e-5 and manifest.parity["exporter"] == "legacy"
    assert manifest.parity["greedy_tokens"] == {**manifest.parity["greedy_tokens"],
                                                "sentences": 100, "mismatches": 0}
    assert manifest.training["data_kind"] == "toy" and manifest.training["epochs_run"] == 6
    assert manifest.libraries["sacrebleu"]
    assert (tmp / "runs" / "best.pt").is_file() and (tmp / "runs" / "last.pt").is_file()
    assert f"published {tmp / 'repo' / NAME / '1'}" in stdout and "test BLEU" in stdout


def test_attention_hits_the_aligned_source_word(published: tuple[Path, str]) -> None:
    """The issue's check: on held-out generated sentences decoded greedily through the
    exported graphs, >= 80% of generated words attend most to their aligned source word."""
    tmp, stdout = published
    metrics = json.loads((tmp / "repo" / NAME / "1" / "manifest.json").read_text())["metrics"]
    greedy = metrics["attention_alignment"]["greedy"]
    assert greedy["words"] > 1000
    assert greedy["accuracy"] >= 0.8, greedy
    assert "attention on the aligned source word" in stdout


def test_the_server_runner_translates_as_the_trainer_measured(
        published: tuple[Path, str]) -> None:
    tmp, _ = published
    version = tmp / "repo" / NAME / "1"
    manifest = verify_version(version)
    runner = TranslatorRunner(manifest, version, SessionConfig(intra_op_threads=1))
    samples = manifest.metrics["samples"]
    results = runner.translate([s["source"] for s in samples] + ["el gato negro no la ve"])
    assert [r.text for r in results[:-1]] == [s["translation"] for s in samples]
    assert results[-1].text == "the black cat does not see it"
    for r in results:
        np.testing.assert_allclose(r.attention.sum(axis=1), 1.0, atol=1e-5)
        assert r.attention.shape == (len(r.target_pieces), len(r.source_pieces))
