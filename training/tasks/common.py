"""Options and building blocks every task shares, so each CLI spells them the same way."""

from __future__ import annotations

import argparse
import math
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from serving.repository.layout import is_valid_model_name
from training.distributed import device_for, world
from training.errors import DataError
from training.export.parity import DEFAULT_TOLERANCE
from training.loop import TrainConfig
from training.regularizers import WeightPenalty, elastic_net_strengths

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("none", "cosine", "step", "plateau")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def split_fraction(text: str) -> float:
    """A share of the images held out: 0 would leave that split empty, 1 the others."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1): that split needs images, got "
                                         f"{text}")
    return value


def positive_float(text: str) -> float:
    # inf and nan are floats too: a learning rate of inf runs until the loss is nan
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def model_name(text: str) -> str:
    # checked here so a bad name fails before minutes of training, not at publication
    if not is_valid_model_name(text):
        raise argparse.ArgumentTypeError(
            f"invalid model name {text!r}: letters, digits, '_', '-', '.' (128 at most)")
    return text


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of every task. Those defaulting to None are filled in per task / architecture."""
    io = parser.add_argument_group("input and output")
    io.add_argument("--repository", type=Path, default=Path("exported"),
                    help="model repository to publish into (default: %(default)s)")
    io.add_argument("--name", type=model_name, default=None, help="model name in the repository")
    io.add_argument("--data-dir", type=Path, default=None,
                    help="dataset folder (default: the bundled data)")
    io.add_argument("--checkpoint-dir", type=Path, default=None,
                    help="where best.pt and last.pt go (default: runs/<name>)")
    io.add_argument("--quiet", action="store_true",
                    help="no progress bar and no per-epoch lines; the summary still prints")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=positive_int, default=None, help="maximum number of epochs")
    opt.add_argument("--batch-size", type=positive_int, default=None)
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    opt.add_argument("--lr", type=positive_float, default=None, help="initial learning rate")
    opt.add_argument("--momentum", type=non_negative_float, default=0.9,
                     help="SGD momentum (default: %(default)s)")
    opt.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="cosine",
                     help="per-epoch schedule: cosine annealing to ~0, step (x0.1 every third "
                          "of the epochs), plateau (x0.1 after 2 flat epochs), none "
                          "(default: %(default)s)")
    opt.add_argument("--patience", type=non_negative_int, default=5,
                     help="stop after this many epochs without a lower validation loss; "
                          "0 disables early stopping (default: %(default)s)")
    opt.add_argument("--grad-clip", type=positive_float, default=None,
                     help="clip the global gradient norm to this value")
    opt.add_argument("--seed", type=int, default=0,
                     help="seeds initialisation, dropout and batch order (default: %(default)s)")
    opt.add_argument("--max-minutes", type=positive_float, default=None,
                     help="training time budget; no epoch starts that would, at the last "
                          "epoch's pace, end past it")
    opt.add_argument("--device", default="auto",
                     help="auto (cuda when available), cpu, cuda, cuda:1 ... "
                          "(default: %(default)s)")

    reg = parser.add_argument_group(
        "regularisation", "Penalties cover weight matrices and kernels, never biases. "
        "L1 = l1*sum|w|, L2 = l2*sum w^2 (no 1/2). Elastic net: give both --l1 and --l2, "
        "or --elastic-net LAMBDA --l1-ratio R (l1 = LAMBDA*R, l2 = LAMBDA*(1-R)).")
    reg.add_argument("--l1", type=non_negative_float, default=0.0, help="L1 (lasso) strength")
    reg.add_argument("--l2", type=non_negative_float, default=0.0, help="L2 (ridge) strength")
    reg.add_argument("--elastic-net", type=non_negative_float, default=None, metavar="LAMBDA",
                     help="elastic-net strength; adds to --l1 / --l2")
    reg.add_argument("--l1-ratio", type=unit_interval, default=0.5,
                     help="share of --elastic-net that is L1 (default: %(default)s)")
    reg.add_argument("--dropout", type=probability, default=None, help="dropout probability")

    export = parser.add_argument_group("export")
    export.add_argument("--parity-tolerance", type=positive_float, default=DEFAULT_TOLERANCE,
                        help="largest |onnxruntime - PyTorch| allowed (default: %(default)g)")


def add_unseen_classes_argument(group: argparse._ArgumentGroup) -> None:
    """For tasks whose classes come from the data: see check_unseen_classes."""
    group.add_argument("--allow-unseen-classes", action="store_true",
                       help="keep classes that no training example has (they are reported); "
                            "by default such data is refused, since the model could only "
                            "learn never to predict them")


def check_unseen_classes(names: Sequence[str], train_counts: Sequence[int], where: str,
                         allow: bool) -> list[str]:
    """The names of classes with no training example (printed); refused unless allow.

    Such classes come from labels that skip a number (1..26 for 26 letters makes a class 0) or
    that only the held-out files use: training would silently publish outputs it never saw.
    """
    unseen = [name for name, count in zip(names, train_counts, strict=True) if count == 0]
    if unseen and not allow:
        shown = ", ".join(repr(n) for n in unseen[:10]) + (" ..." if len(unseen) > 10 else "")
        raise DataError(f"{where}: no training example of class(es) {shown} "
                        f"({len(unseen)} of {len(names)} classes); relabel the data, or pass "
                        "--allow-unseen-classes to keep them")
    if unseen:
        print(f"warning: no training example of class(es) {', '.join(unseen)}; kept "
              "(--allow-unseen-classes)")
    return unseen


def penalty_strengths(args: argparse.Namespace) -> tuple[float, float]:
    l1, l2 = args.l1, args.l2
    if args.elastic_net is not None:
        e1, e2 = elastic_net_strengths(args.elastic_net, args.l1_ratio)
        l1, l2 = l1 + e1, l2 + e2
    return l1, l2


def build_penalty(args: argparse.Namespace) -> WeightPenalty | None:
    return WeightPenalty.build(*penalty_strengths(args))


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The trainer loop's settings from the options every task shares."""
    return TrainConfig(epochs=args.epochs, patience=args.patience or None,
                       checkpoint_dir=args.checkpoint_dir, grad_clip=args.grad_clip,
                       progress=not args.quiet, log=None if args.quiet else print,
                       max_seconds=args.max_minutes * 60 if args.max_minutes else None)


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int) -> Any | None:
    """A scheduler stepped once per epoch by the trainer loop, or None."""
    sched = torch.optim.lr_scheduler
    if name == "none":
        return None
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "step":
        return sched.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    if name == "plateau":
        return sched.ReduceLROnPlateau(optimizer, factor=0.1, patience=2)
    raise ValueError(f"unknown lr schedule {name!r}; choose from {', '.join(LR_SCHEDULES)}")


def resolve_device(name: str) -> torch.device:
    """auto: cuda when available; under torchrun each process on its own GPU."""
    return device_for(name, world())


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def jsonable_config(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI options as plain JSON values (paths as strings, no callables)."""
    out: dict[str, Any] = {}
    for key, value in sorted(vars(args).items()):
        if callable(value):
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def int_list(text: str) -> list[int]:
    """'256,128' -> [256, 128]: layer sizes given on the command line ('' -> none)."""
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 256,128, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError("layer sizes must be positive")
    return sizes


def non_empty_int_list(text: str) -> list[int]:
    """int_list that needs at least one size (e.g. the conv stages of an encoder)."""
    sizes = int_list(text)
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected sizes like 16,32,64, got {text!r}")
    return sizes
