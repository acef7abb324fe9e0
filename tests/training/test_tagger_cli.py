"""End to end: python -m training tagger trains, exports with parity, tunes thresholds on
validation, scores the exported file on test and publishes a version onnxruntime alone serves."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from serving.repository import verify_version
from tests.training.tagging_data import make_tagging_folder
from training.__main__ import build_parser, main
from training.run_config import resolve
from training.tasks.tagger import TaggerTask

SIZES = ("--train-canvases", "400", "--val-canvases", "150", "--test-canvases", "150")
QUICK = ["--epochs", "2", *SIZES, "--quiet"]

# Runs with torch made unimportable, as on a server: regenerates the held-out canvases from the
# manifest's settings, runs the exported graph and recomputes the published figures.
NO_TORCH_CHECK = textwrap.dedent("""
    import json, sys
    sys.modules["torch"] = None
    import numpy as np
    from training.data.mnist import load_mnist
    from training.data.multidigit import make_multidigit
    from training.evaluate import run_classifier
    from training.multilabel_metrics import decide, decision_metrics, ranking_metrics
    version = sys.argv[1]
    manifest = json.load(open(version + "/manifest.json"))
    s = manifest["training"]["data"]
    sizes = tuple(s["canvases"][k] for k in ("train", "validation", "test"))
    test = make_multidigit(load_mnist(None), sizes, seed=s["canvas_seed"],
                           canvas_size=s["canvas_size"], max_digits=s["max_digits"]).test
    probs, logits = run_classifier(version + "/model.onnx", test.images[:, None], batch_size=61)
    tuned = decision_metrics(decide(probs, np.array(manifest["thresholds"])), test.tags)
    print(json.dumps({
        "torch_loaded": sys.modules.get("torch") is not None,
        "shape": list(probs.shape),
        "min": float(probs.min()), "max": float(probs.max()),
        "max_sum_error": float(np.abs(probs.sum(1) - 1).max()),
        "micro_f1": tuned["micro_f1"], "exact_match": tuned["exact_match"],
        "map": ranking_metrics(probs, test.tags)["map"],
    }))
""")


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "training", "tagger", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("tagger")
    proc = _cli(cwd, *QUICK, "--repository", "repo")
    assert f"published {Path('repo') / 'tagger-multidigit' / '1'}" in proc.stdout
    return cwd / "repo" / "tagger-multidigit" / "1", proc.stdout


def test_prints_the_held_out_figures(published) -> None:
    _, stdout = published
    for words in ("micro-F1", "macro-F1", "exact match", "Hamming loss", "precision@3",
                  "label-frequency baseline", "parity max |diff|", "thresh"):
        assert words in stdout


def test_manifest_of_a_tagger(published) -> None:
    version, _ = published
    m = verify_version(version)
    assert m.task == "tag" and m.graphs == {"model": "model.onnx"}
    assert m.labels == [str(d) for d in range(10)]
    assert len(m.thresholds) == 10 and all(0 < t <= 1 for t in m.thresholds)
    assert [(t.name, t.shape) for t in m.inputs] == [("pixels", [-1, 1, 64, 64])]
    assert [(t.name, t.shape) for t in m.outputs] == [("probabilities", [-1, 10]),
                                                      ("logits", [-1, 10])]
    pre = m.preprocessing
    assert (pre["color"], pre["channels"], pre["height"], pre["width"]) == ("grayscale", 1,
                                                                            64, 64)
    assert pre["normalization"]["applied_in_graph"] and pre["input_range"] == [0, 255]
    assert 0 <= m.parity["max_abs_diff"] <= 1e-4 and m.parity["samples"] > 150
    metrics = m.metrics
    assert metrics["split"] == "test" and metrics["n_test"] == 150
    for key in ("micro_f1", "macro_f1", "exact_match", "hamming_loss", "map",
                "precision_at_1", "precision_at_3", "micro_precision", "micro_recall"):
        assert 0 <= metrics[key] <= 1, key
    assert set(metrics["at_threshold_0.5"]) >= {"micro_f1", "exact_match", "hamming_loss"}
    base = metrics["baseline_label_frequency"]
    assert metrics["map"] > base["map"]  # two short epochs already beat ignoring the image
    assert set(metrics["per_label"]) == set(m.labels)
    assert metrics["validation"]["n"] == 150
    t = m.training
    assert t["task"] == "tagger" and t["arch"] == "cnn" and t["pos_weight"] == "none"
    assert t["data"]["canvases"] == {"train": 400, "validation": 150, "test": 150}
    assert t["epochs_run"] == 2 and len(t["history"]) == 2
    assert m.serving == {"max_batch_size": 256}
    assert (version.parent / "config.pbtxt").is_file()


def test_onnxruntime_alone_reproduces_the_published_figures(published) -> None:
    version, _ = published
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_CHECK, str(version)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not got["torch_loaded"] and got["shape"] == [150, 10]
    assert got["min"] >= 0 and got["max"] <= 1
    assert got["max_sum_error"] > 0.05  # per-label sigmoids: the rows are not distributions
    metrics = json.loads((version / "manifest.json").read_text())["metrics"]
    for key in ("micro_f1", "exact_match", "map"):
        assert got[key] == pytest.approx(metrics[key], abs=1e-9), key


def test_folder_dataset_rgb_with_auto_pos_weight(tmp_path: Path) -> None:
    folder = make_tagging_folder(tmp_path / "photos", n=60)
    proc = _cli(tmp_path, "--dataset", "folder", "--data-dir", str(folder), "--image-size",
                "16", "--channels", "8,16", "--hidden", "16", "--epochs", "3",
                "--pos-weight", "auto", "--repository", "repo", "--quiet")
    assert "published" in proc.stdout
    m = verify_version(tmp_path / "repo" / "tagger-photos" / "1")
    assert m.labels == ["blue", "green", "red"] and len(m.thresholds) == 3
    assert m.inputs[0].shape == [-1, 3, 16, 16]
    assert m.preprocessing["color"] == "rgb" and m.preprocessing["resize"] == "bilinear"
    assert len(m.preprocessing["normalization"]["mean"]) == 3
    assert m.metrics["n_test"] == 9 and m.training["data"]["tags_csv"].endswith("tags.csv")
    assert m.training["pos_weight"] == "auto"


def test_folder_dataset_needs_a_folder(tmp_path: Path, capsys) -> None:
    assert main(["tagger", "--dataset", "folder", "--repository", str(tmp_path / "r"),
                 "--quiet"]) == 2
    assert "--dataset folder needs --data-dir" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_defaults_per_dataset_then_architecture() -> None:
    def parse(*argv: str):
        flags = vars(build_parser().parse_args(["tagger", *argv]))
        del flags["task"], flags["config"]
        return resolve(TaggerTask.schema, "tagger", TaggerTask.preset, None, flags)

    digits = parse()
    assert (digits.dataset, digits.arch, digits.name) == ("multidigit", "cnn",
                                                          "tagger-multidigit")
    assert digits.epochs == 8 and digits.hflip is False
    assert digits.pos_weight == "none" and digits.channels == [16, 32, 64, 64]
    photos = parse("--dataset", "folder", "--arch", "mlp")
    assert (photos.name, photos.epochs, photos.hflip) == ("tagger-photos", 40, True)
    assert photos.hidden == [512, 256]
    explicit = parse("--dataset", "folder", "--epochs", "5", "--no-hflip", "--name", "x")
    assert (explicit.epochs, explicit.hflip, explicit.name) == (5, False, "x")
    with pytest.raises(SystemExit):
        parse("--pos-weight", "sometimes")
