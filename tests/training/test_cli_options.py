from __future__ import annotations

from pathlib import Path

import pytest

from training.__main__ import build_parser
from training.tasks.common import build_scheduler, penalty_strengths
from training.tasks.mnist import ARCH_DEFAULTS, resolve_defaults


def _parse(*argv: str):
    return build_parser().parse_args(["mnist", *argv])


def test_per_arch_defaults_fill_unset_options_only() -> None:
    args = resolve_defaults(_parse("--arch", "cnn", "--lr", "0.01"))
    assert args.lr == 0.01
    assert args.epochs == ARCH_DEFAULTS["cnn"]["epochs"]
    assert args.dropout == ARCH_DEFAULTS["cnn"]["dropout"]
    assert args.name == "mnist-cnn"
    assert args.checkpoint_dir == Path("runs") / "mnist-cnn"
    assert args.repository == Path("exported") and args.seed == 0


def test_hidden_sizes_parse() -> None:
    assert _parse("--hidden", "64,32").hidden == [64, 32]


def test_elastic_net_options_combine() -> None:
    args = _parse("--l1", "0.1", "--elastic-net", "0.2", "--l1-ratio", "0.25")
    assert penalty_strengths(args) == pytest.approx((0.15, 0.15))
    assert penalty_strengths(_parse("--l2", "0.3")) == (0.0, 0.3)


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
