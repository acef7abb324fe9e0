"""--quantize int8: the served graph is the INT8 one, measured against the float one."""

import json
import subprocess
import sys

import onnx

from serving.repository import verify_version
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
