"""--quantize int8: the served graph is the INT8 one, measured against the float one."""

import json
import subprocess
import sys

import onnx

from serving.repository import verify_version
from serving.runners.translator import TranslatorRunner
from serving.runtime.session import SessionConfig
from tests.conftest import ROOT


def test_int8_export_reports_accuracy_and_speed(tmp_path):
    cmd = [sys.executable, "-m", "training", "mnist", "--arch", "mlp", "--epochs", "2",
           "--limit-train", "1500", "--repository", str(tmp_path), "--name", "q", "--quiet",
           "--quantize", "int8"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    version = tmp_path / "q" / "1"
    verify_version(version)
    ops = {node.op_type for node in onnx.load(version / "model.onnx").graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops
    report = json.loads((version / "manifest.json").read_text())["quantization"]
    assert report["type"] == "int8-dynamic" and report["batch"] > 1
    assert report["float_ms_batch1"] > 0 and report["int8_ms_batch1"] > 0
    assert abs(report["score_change"]) < 0.05  # a tiny model on the bundled digits
    assert "int8: test accuracy" in result.stdout


def test_int8_translation_reports_bleu_and_speed_and_serves_the_int8_graphs(tmp_path):
    cmd = [sys.executable, "-m", "training", "translate", "--toy-sizes", "2000,200,200",
           "--epochs", "3", "--repository", str(tmp_path), "--name", "tq",
           "--checkpoint-dir", str(tmp_path / "runs"), "--parity-sentences", "50",
           "--quantize", "int8"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    version = tmp_path / "tq" / "1"
    manifest = verify_version(version)
    assert sorted(manifest.files) == ["decoder_step.onnx", "encoder.onnx", "source.model",
                                      "target.model"]  # no float copy left behind
    step_ops = {n.op_type for n in onnx.load(version / "decoder_step.onnx").graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & step_ops
    report = manifest.extra["quantization"]
    assert report["type"] == "int8-dynamic" and report["graphs"] == ["encoder.onnx",
                                                                     "decoder_step.onnx"]
    assert report["float_ms_batch1"] > 0 and report["int8_ms_batch"] > 0
    assert report["int8_score"] == manifest.metrics["bleu"]  # the published BLEU is int8's
    assert abs(report["score_change"]) < 10  # BLEU points, a small model after 3 epochs
    assert "int8: test BLEU" in result.stdout
    # the server runs the quantised pair and translates as the trainer measured
    runner = TranslatorRunner(manifest, version, SessionConfig(intra_op_threads=1))
    samples = manifest.metrics["samples"]
    assert [r.text for r in runner.translate([s["source"] for s in samples])] == \
        [s["translation"] for s in samples]
