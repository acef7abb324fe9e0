"""End to end: the CLI trains, exports, checks parity and publishes versions a torch-free
process can serve."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from serving.repository import verify_version, version_numbers
from training.__main__ import main
from training.export.parity import check_parity
from training.tasks import common
from training.tasks import mnist as mnist_task

QUICK = ["--arch", "softmax", "--epochs", "1", "--limit-train", "500", "--quiet"]

# Runs with torch made unimportable: what the server side will have.
NO_TORCH_CHECK = textwrap.dedent("""
    import json, sys, runpy, io, contextlib
    sys.modules["torch"] = None
    import numpy as np
    from training.data.mnist import load_mnist
    from training.evaluate import run_classifier
    model = sys.argv[1]
    test = load_mnist(None).test
    images = np.concatenate([test.images, np.zeros((1, 28, 28), np.uint8),
                             np.full((1, 28, 28), 255, np.uint8)])
    probs, logits = run_classifier(model + "/model.onnx", images, batch_size=97)
    out = io.StringIO()
    sys.argv = ["training.evaluate", "--model", model, "--json"]
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module("training.evaluate", run_name="__main__")
        except SystemExit as e:
            assert e.code == 0, e.code
    print(json.dumps({
        "max_sum_error": float(np.abs(probs.astype(np.float64).sum(1) - 1).max()),
        "extremes_sum": probs[-2:].sum(1).tolist(),
        "min_prob": float(probs.min()),
        "shape": list(probs.shape),
        "accuracy": float((probs[:-2].argmax(1) == test.labels).mean()),
        "evaluate": json.loads(out.getvalue()),
        "torch_loaded": sys.modules.get("torch") is not None,
    }))
""")


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "training", "mnist", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("e2e")
    for expected in (1, 2):
        proc = _cli(cwd, *QUICK, "--repository", "tmp", "--name", "t")
        assert f"published {Path('tmp') / 't' / str(expected)}" in proc.stdout
        assert "test accuracy" in proc.stdout and "ECE (15 bins) before" in proc.stdout
    return cwd


def test_two_runs_publish_versions_one_and_two(published: Path) -> None:
    model_dir = published / "tmp" / "t"
    assert version_numbers(model_dir) == [1, 2]
    assert (model_dir / "config.pbtxt").is_file()
    assert 'max_batch_size: 256' in (model_dir / "config.pbtxt").read_text()
    assert not list(model_dir.glob(".staging-*"))
    assert (published / "runs" / "t" / "best.pt").is_file()
    m1, m2 = (verify_version(model_dir / str(v)) for v in (1, 2))
    # same seed, same data: the same graph and the same weights. Compared as numbers, not
    # bytes: a float sum's order may differ between two processes on a loaded machine (seen
    # twice in CI-like runs), while a seeding mistake would change every weight
    g1, g2 = (onnx.load(model_dir / str(v) / "model.onnx").graph for v in (1, 2))
    assert [(n.op_type, list(n.input)) for n in g1.node] == \
        [(n.op_type, list(n.input)) for n in g2.node]
    assert [t.name for t in g1.initializer] == [t.name for t in g2.initializer]
    for a, b in zip(g1.initializer, g2.initializer, strict=True):
        np.testing.assert_allclose(numpy_helper.to_array(a), numpy_helper.to_array(b),
                                   rtol=0, atol=1e-5)


def test_manifest_contents(published: Path) -> None:
    m = verify_version(published / "tmp" / "t" / "2")
    assert m.task == "classify" and m.graphs == {"model": "model.onnx"}
    assert [(t.name, t.shape) for t in m.inputs] == [("pixels", [-1, 1, 28, 28])]
    assert [(t.name, t.shape) for t in m.outputs] == [("probabilities", [-1, 10]),
                                                      ("logits", [-1, 10])]
    assert m.labels == [str(i) for i in range(10)]
    pre = m.preprocessing
    assert pre["input_range"] == [0, 255] and pre["normalization"]["applied_in_graph"]
    assert pre["background"] == "black" and pre["layout"] == "NCHW"
    assert 0.05 < pre["normalization"]["mean"][0] < 0.25
    metrics = m.metrics
    assert metrics["split"] == "test" and metrics["n_test"] == 500
    assert 0.3 < metrics["accuracy"] <= 1.0  # one epoch on 500 digits: well above chance
    assert metrics["ece_bins"] == 15 and metrics["temperature"] > 0
    assert sum(map(sum, metrics["confusion_matrix"])) == 500
    assert 0 <= m.parity["max_abs_diff"] <= 1e-4 and m.parity["tolerance"] == 1e-4
    assert m.parity["provider"] == "CPUExecutionProvider" and m.parity["samples"] > 256
    assert m.training["seed"] == 0 and m.training["arch"] == "softmax"
    assert m.training["epochs_run"] == 1 and m.training["limit_train"] == 500
    assert m.training["data"]["train"] == 500
    assert set(m.libraries) >= {"python", "torch", "onnx", "onnxruntime", "numpy"}
    assert m.serving == {"max_batch_size": 256}


def test_onnxruntime_alone_gives_distributions(published: Path) -> None:
    version = published / "tmp" / "t" / "2"
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_CHECK, str(version)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not got["torch_loaded"]
    assert got["shape"] == [502, 10]
    assert got["max_sum_error"] <= 1e-5
    assert all(abs(s - 1) <= 1e-5 for s in got["extremes_sum"])
    assert got["min_prob"] >= 0
    manifest = json.loads((version / "manifest.json").read_text())
    assert got["accuracy"] == pytest.approx(manifest["metrics"]["accuracy"])
    assert got["evaluate"]["accuracy"] == pytest.approx(manifest["metrics"]["accuracy"])


def test_other_image_size_and_class_count_need_no_code_change(idx_dataset,
                                                              tmp_path: Path) -> None:
    data = idx_dataset(n_train=600, n_test=150, classes=3, size=(16, 16))
    proc = _cli(tmp_path, "--arch", "cnn", "--epochs", "2", "--data-dir", str(data),
                "--repository", "repo", "--name", "shapes", "--quiet")
    assert "published" in proc.stdout
    m = verify_version(tmp_path / "repo" / "shapes" / "1")
    assert m.inputs[0].shape == [-1, 1, 16, 16]
    assert m.output("probabilities").shape == [-1, 3] and m.labels == ["0", "1", "2"]
    assert m.preprocessing["height"] == 16 and m.metrics["n_test"] == 150
    assert m.metrics["accuracy"] > 0.9  # the bands are easy to tell apart
    assert m.training["data"] == {"source": str(data), "train": 540, "validation": 60,
                                  "test": 150, "split_seed": 0}


def _quick_in_process(tmp_path: Path, *extra: str) -> list[str]:
    return ["mnist", *QUICK, "--repository", str(tmp_path / "repo"), "--name", "m",
            "--checkpoint-dir", str(tmp_path / "ckpt"), *extra]


def test_failed_parity_publishes_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    # the parser refuses a tolerance <= 0, so the gate is made impossible to pass here
    monkeypatch.setattr(common, "check_parity",
                        lambda *a, **kw: check_parity(*a, **{**kw, "tolerance": -1.0}))
    assert main(_quick_in_process(tmp_path)) == 1
    assert "differs from PyTorch" in capsys.readouterr().err
    # no version, no staging folder, no empty model folder: the repository it made is gone
    assert not (tmp_path / "repo").exists()


def test_exception_while_staging_leaves_no_version(tmp_path: Path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(mnist_task, "evaluate_classifier", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(_quick_in_process(tmp_path))
    assert not (tmp_path / "repo").exists()


def test_bad_data_dir_is_a_clean_error(tmp_path: Path, capsys) -> None:
    assert main(_quick_in_process(tmp_path, "--data-dir", str(tmp_path / "missing"))) == 2
    assert "missing: data folder not found" in capsys.readouterr().err
