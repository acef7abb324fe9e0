from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.__main__ import build_parser
from training.pipeline import with_checkpoint_dir
from training.run_config import PRESETS, resolve
from training.tasks import TASKS
from training.tasks.common import build_scheduler, penalty_strengths


def _parse(*argv: str):
    return build_parser().parse_args(["mnist", *argv])


def _config(*argv: str):
    flags = vars(_parse(*argv))
    del flags["task"], flags["config"]
    task = TASKS["mnist"]
    return with_checkpoint_dir(resolve(task.schema, "mnist", task.preset, None, flags))


def test_per_arch_presets_fill_unset_options_only() -> None:
    config = _config("--arch", "cnn", "--lr", "0.01")
    preset = yaml.safe_load((PRESETS / "mnist-cnn.yaml").read_text())
    assert config.lr == 0.01
    assert config.epochs == preset["epochs"] and config.dropout == preset["dropout"]
    assert config.name == "mnist-cnn"
    assert config.checkpoint_dir == Path("runs") / "mnist-cnn"
    assert config.repository == Path("exported") and config.seed == 0


def test_hidden_sizes_parse() -> None:
    assert _parse("--hidden", "64,32").hidden == [64, 32]
    assert _parse("--hidden", "").hidden == []


def test_elastic_net_options_combine() -> None:
    config = _config("--l1", "0.1", "--elastic-net", "0.2", "--l1-ratio", "0.25")
    assert penalty_strengths(config) == pytest.approx((0.15, 0.15))
    assert penalty_strengths(_config("--l2", "0.3")) == (0.0, 0.3)


@pytest.mark.parametrize("argv", [
    ["--name", "no spaces"], ["--dropout", "1"], ["--epochs", "0"], ["--lr", "-1"],
    ["--l1-ratio", "2"], ["--arch", "resnet"], ["--hidden", "12,x"], ["--patience", "-1"],
])
def test_bad_options_are_rejected_before_training(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(*argv)
    assert exc.value.code == 2


@pytest.mark.parametrize("schedule", ["none", "cosine", "step", "plateau"])
def test_every_schedule_builds(schedule: str) -> None:
    import torch

    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    sched = build_scheduler(schedule, opt, epochs=6)
    assert (sched is None) == (schedule == "none")
