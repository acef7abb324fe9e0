"""--resume: a run killed (SIGKILL) after epoch 2 of 4 and resumed ends with the weights of the
uninterrupted run (CPU, same seed): model, optimiser, schedule, early stopping and RNG states
all travel in last.pt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
# dropout and Adam, so RNG and optimiser state matter; big enough layers for ~1 s epochs
RUN = ["mnist", "--arch", "mlp", "--hidden", "1024,1024", "--dropout", "0.3", "--epochs", "4",
       "--limit-train", "2000",
       "--batch-size", "32", "--lr-schedule", "step", "--patience", "0", "--seed", "5",
       "--device", "cpu", "--quiet", "--no-calibrate", "--name", "m"]


def command(tmp: Path, ckpt: str, *extra: str) -> list[str]:
    return [sys.executable, "-u", "-m", "training", *RUN, "--repository", str(tmp / "repo"),
            "--checkpoint-dir", str(tmp / ckpt), *extra]


def epoch_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(command(tmp_path, "whole"), cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]

    last = tmp_path / "killed" / "last.pt"
    proc = subprocess.Popen(command(tmp_path, "killed"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (last.exists() and epoch_of(last) >= 2):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "epoch 2 never checkpointed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    killed_at = epoch_of(last)
    assert killed_at in (2, 3), "the kill must land before the last epoch"

    resumed = subprocess.run(command(tmp_path, "killed", "--resume"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(tmp_path / "whole" / "last.pt", map_location="cpu", weights_only=True)
    b = torch.load(last, map_location="cpu", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4
    for key in ("model", "best_model"):
        for name, tensor in a[key].items():
            assert torch.allclose(tensor, b[key][name], atol=1e-6, rtol=0), (key, name)
    assert a["best_epoch"] == b["best_epoch"]
    assert [h["val"] for h in a["history"]] == [h["val"] for h in b["history"]]


def test_resume_under_torchrun_continues_each_rank(tmp_path: Path) -> None:
    """2 CPU processes: a run stopped after epoch 1 and resumed to epoch 2 has the weights of a
    2-epoch run (no schedule, so the shorter first run takes the same steps)."""
    from tests.training.test_distributed import _train

    args = ["--arch", "mlp", "--hidden", "32", "--limit-train", "800", "--lr-schedule", "none",
            "--seed", "1", "--no-calibrate"]
    _train(tmp_path / "whole", "mnist", [*args, "--epochs", "2"], processes=2)
    _train(tmp_path / "parts", "mnist", [*args, "--epochs", "1"], processes=2)
    resumed = _train(tmp_path / "parts", "mnist", [*args, "--epochs", "2", "--resume"],
                     processes=2)
    assert "resume: continuing after epoch 1" in resumed.stdout
    a = torch.load(tmp_path / "whole" / "runs" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "parts" / "runs" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and len(b["rng"]) == 2
    for name, tensor in a["model"].items():
        assert torch.allclose(tensor, b["model"][name], atol=1e-6, rtol=0), name


def test_resume_refuses_a_different_run_and_leaves_its_config(tmp_path: Path) -> None:
    """--resume with another learning rate would continue a different run from this one's
    weights: refused before any work (exit 2, one line naming the key); longer is fine."""
    quick = ["mnist", "--arch", "softmax", "--limit-train", "300", "--epochs", "1", "--quiet",
             "--no-calibrate", "--device", "cpu", "--name", "m",
             "--repository", str(tmp_path / "repo"), "--checkpoint-dir", str(tmp_path / "ck")]

    def train(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "training", *quick, *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    assert train().returncode == 0
    saved = (tmp_path / "ck" / "config.yaml").read_text()
    refused = train("--resume", "--lr", "0.5")
    assert refused.returncode == 2, refused.stderr[-2000:]
    line = refused.stderr.strip()
    assert "\n" not in line and "lr" in line and "different run" in line, line
    assert (tmp_path / "ck" / "config.yaml").read_text() == saved
    longer = train("--resume", "--epochs", "2")
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert epoch_of(tmp_path / "ck" / "last.pt") == 2
