"""Data-parallel training under torchrun: sharding of global batches, and every task run with
`torchrun --nproc_per_node=2` on CPU (gloo) publishing one checked version, rank 0 only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from serving.repository.verify import verify_version
from training.batching import ShuffledBatches
from training.data.translation_batches import TranslationBatches
from training.distributed import (
    World,
    backend_for,
    device_for,
    finish_training,
    process_group,
    shard,
    world,
)
from training.outputs import LOCK_FILE
from training.run_config import CONFIG_FILE

ROOT = Path(__file__).resolve().parents[2]
TWO = [World(rank=r, size=2) for r in range(2)]


def test_shards_of_a_batch_reunite_to_it() -> None:
    batch = torch.arange(10, 20)
    parts = [shard(batch, w) for w in TWO]
    assert [len(p) for p in parts] == [5, 5]
    assert sorted(torch.cat(parts).tolist()) == batch.tolist()


def test_uneven_batches_are_padded_so_every_rank_steps_alike() -> None:
    three = [World(rank=r, size=3) for r in range(3)]
    parts = [shard([7, 8, 9, 10], w) for w in three]
    assert [len(p) for p in parts] == [2, 2, 2]
    assert set(sum(parts, [])) == {7, 8, 9, 10}
    # a batch smaller than the world still gives every rank one example
    assert [shard(torch.tensor([5]), w).tolist() for w in three] == [[5], [5], [5]]


def test_world_of_one_leaves_batches_alone() -> None:
    assert world() == World() and not World().distributed
    assert shard([1, 2, 3], World()) == [1, 2, 3]
    with process_group("cpu", environ={}) as w:
        assert w == World()
        assert finish_training() == World()  # nothing to leave


def test_shuffled_batches_split_each_global_batch() -> None:
    x = torch.arange(50)
    single = [b[0].tolist() for b in ShuffledBatches((x,), 8, seed=3)(epoch=2)]
    ranks = [[b[0].tolist() for b in ShuffledBatches((x,), 8, seed=3, current=w)(epoch=2)]
             for w in TWO]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for step, batch in enumerate(single):  # 50 = 6 x 8 + 2: every batch splits evenly
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(batch)


def test_translation_batches_split_each_global_batch() -> None:
    sources = [[3 + i % 5] * (1 + i % 7) for i in range(40)]
    targets = [[4] * (1 + i % 3) for i in range(40)]

    def batches(current: World | None) -> list[list[int]]:
        out = TranslationBatches(sources, targets, 8, 0, 0, 1, 2, current=current)(epoch=1)
        return [src[:, 0].tolist() + lengths.tolist() for src, lengths, _, _ in out]

    single, r0, r1 = batches(None), batches(TWO[0]), batches(TWO[1])
    assert len(single) == len(r0) == len(r1)
    assert all(len(a) == len(b) for a, b in zip(r0, r1, strict=True))


def test_backend_and_device_per_process() -> None:
    assert backend_for("cpu") == "gloo" and backend_for("cuda:0") == "nccl"
    if not torch.cuda.is_available():
        assert backend_for("auto") == "gloo"
        assert device_for("auto", TWO[1]) == torch.device("cpu")
    # several processes on one machine: a bare "cuda" means this process's own GPU
    assert device_for("cuda", World(rank=1, size=2, local_rank=1)) == torch.device("cuda", 1)
    assert device_for("cuda:0", World(rank=1, size=2, local_rank=1)) == torch.device("cuda", 0)


def _train(root: Path, task: str, args: list[str], processes: int) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={processes}", "-m", "training"] if processes > 1
                else [sys.executable, "-m", "training"])
    cmd = [*launcher, task, "--repository", str(root / "repo"), "--name", "m",
           "--checkpoint-dir", str(root / "runs"), "--quiet", *args]
    # one thread a process, as torchrun sets it, so both runs compute alike; a rank that dies
    # of a signal prints its Python stacks
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _published(root: Path) -> dict:
    versions = sorted(p.name for p in (root / "repo" / "m").iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    assert versions == ["1"], versions  # rank 0 alone publishes
    verify_version(root / "repo" / "m" / "1")
    return json.loads((root / "repo" / "m" / "1" / "manifest.json").read_text())


def test_torchrun_mnist_matches_the_single_process_run(tmp_path: Path) -> None:
    """DDP over 2 processes with the same global batch takes the same optimiser steps as one
    process (the softmax model has no dropout), so the runs agree to rounding."""
    args = ["--arch", "softmax", "--epochs", "2", "--seed", "0"]
    ddp = _train(tmp_path / "ddp", "mnist", args, processes=2)
    _train(tmp_path / "single", "mnist", args, processes=1)
    a, b = _published(tmp_path / "ddp"), _published(tmp_path / "single")
    assert a["training"]["distributed"]["world_size"] == 2
    assert a["training"]["distributed"]["backend"] == "gloo"
    assert b["training"]["distributed"]["world_size"] == 1
    assert abs(a["metrics"]["accuracy"] - b["metrics"]["accuracy"]) <= 0.005
    for ha, hb in zip(a["training"]["history"], b["training"]["history"], strict=True):
        assert ha["val"]["loss"] == pytest.approx(hb["val"]["loss"], rel=1e-4)
        assert ha["train"]["loss"] == pytest.approx(hb["train"]["loss"], rel=1e-4)
    # only rank 0 reports; checkpoints are written once
    assert ddp.stdout.count("published ") == 1
    assert {p.name for p in (tmp_path / "ddp" / "runs").iterdir()} == {
        "best.pt", "last.pt", CONFIG_FILE, LOCK_FILE}


TINY = {
    "tagger": ["--train-canvases", "200", "--val-canvases", "60", "--test-canvases", "60",
               "--epochs", "1"],
    "translate": ["--toy-sizes", "300,40,40", "--epochs", "1", "--parity-sentences", "10",
                  "--hidden", "32", "--encoder-hidden", "16", "--embedding-dim", "16"],
    "caption": ["--train-canvases", "96", "--val-canvases", "16", "--test-canvases", "16",
                "--epochs", "1", "--channels", "4,8,8", "--feature-dim", "8", "--hidden", "16",
                "--embed-dim", "8", "--attention-dim", "8", "--batch-size", "32"],
}


@pytest.mark.parametrize("task", sorted(TINY))
def test_every_task_trains_under_torchrun(tmp_path: Path, task: str) -> None:
    _train(tmp_path, task, TINY[task], processes=2)
    manifest = _published(tmp_path)
    assert manifest["training"]["distributed"]["world_size"] == 2
    assert manifest["training"]["epochs_run"] == 1
