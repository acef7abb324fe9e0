"""Building blocks several tasks share, written once: optimiser, schedule, penalty, device,
channel statistics, multi-digit canvases, the unseen-class check."""

from __future__ import annotations

import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from serving.repository import ImagePreprocessing
from serving.repository.graph_io import IMAGE_OUTPUTS, MODEL, MODEL_FILE, PIXELS
from training.config_schema import CanvasConfig, RunConfig
from training.data.mnist import ImageDataset, load_mnist
from training.data.multidigit import MultiDigitData, make_multidigit
from training.distributed import device_for, world
from training.errors import DataError
from training.export.classifier_graph import ClassifierGraph, parity_batches
from training.export.onnx_export import export_onnx
from training.export.parity import ParityReport, check_parity
from training.regularizers import WeightPenalty, elastic_net_strengths

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("none", "cosine", "step", "plateau")
SERVING_MAX_BATCH = 256  # the largest batch the server runs an image model at


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


def penalty_strengths(config: RunConfig) -> tuple[float, float]:
    l1, l2 = config.l1, config.l2
    if config.elastic_net is not None:
        e1, e2 = elastic_net_strengths(config.elastic_net, config.l1_ratio)
        l1, l2 = l1 + e1, l2 + e2
    return l1, l2


def build_penalty(config: RunConfig) -> WeightPenalty | None:
    return WeightPenalty.build(*penalty_strengths(config))


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


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) or (N, H, W) training pixels scaled to [0, 1],
    in float64 (the sums over millions of pixels would lose digits in float32)."""
    x = images.astype(np.float64) / 255.0
    axes = (0, 2, 3) if x.ndim == 4 else (0, 1, 2)
    mean, std = np.atleast_1d(x.mean(axis=axes)), np.atleast_1d(x.std(axis=axes))
    return [float(m) for m in mean], [float(s) if s > 0 else 1.0 for s in std]


def canvases(config: RunConfig, canvas_size: int) -> tuple[ImageDataset, MultiDigitData]:
    """The digits of data_dir (or the bundled ones) and the multi-digit canvases drawn from them
    (disjoint digit splits for train, validation and test)."""
    assert isinstance(config, CanvasConfig)
    digits = load_mnist(config.data_dir)
    made = make_multidigit(
        digits, (config.train_canvases, config.val_canvases, config.test_canvases),
        seed=config.canvas_seed, canvas_size=canvas_size, min_digits=config.min_digits,
        max_digits=config.max_digits, max_overlap=config.max_overlap)
    return digits, made


def head(split: Any, limit: int | None) -> Any:
    """The first `limit` training examples (quick runs), or the split itself."""
    return split.head(limit) if limit else split


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_image_model(graph: ClassifierGraph, folder: Path, image_shape: tuple[int, ...],
                       held_out: np.ndarray, tolerance: float) -> tuple[Path, ParityReport]:
    """model.onnx of a pixels-in image graph in the staged version, gated on parity with the
    PyTorch graph over held-out images (N, C, H, W)."""
    onnx_path = folder / MODEL_FILE
    # any batch of 2+ will do: the exporter would freeze a batch axis traced at size 1
    export_onnx(graph, (torch.zeros((2, *image_shape)),), onnx_path, [PIXELS],
                IMAGE_OUTPUTS, {PIXELS: {0: "batch"}})
    return onnx_path, check_parity(graph, onnx_path, parity_batches(held_out),
                                   tolerance=tolerance)


def image_model_sections(image_shape: tuple[int, ...], outputs: int, color: str,
                         mean: list[float], std: list[float],
                         **preprocessing: Any) -> dict[str, Any]:
    """The manifest sections of a model.onnx taking raw pixels, normalising inside the graph."""
    c, h, w = image_shape
    return {
        "graphs": {MODEL: MODEL_FILE},
        "inputs": [{"name": PIXELS, "dtype": "float32", "shape": [-1, c, h, w]}],
        "outputs": [{"name": name, "dtype": "float32", "shape": [-1, outputs]}
                    for name in IMAGE_OUTPUTS],
        "preprocessing": image_preprocessing(image_shape, color, mean, std, **preprocessing),
    }


def image_preprocessing(image_shape: tuple[int, ...], color: str, mean: list[float],
                        std: list[float], **options: Any) -> dict[str, Any]:
    """The manifest's preprocessing of raw pixels in [0, 255], normalised inside the graph."""
    c, h, w = image_shape
    return ImagePreprocessing(channels=c, height=h, width=w, color=color, normalization={
        "mean": mean, "std": std, "applied_in_graph": True}, **options).to_dict()
