from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from training.data.idx import write_idx

# Real MNIST beside the checkout, as tests/conftest.py locates it; tests needing it skip without.
REAL_MNIST = Path(os.environ.get("SMALLSERVE_MNIST_DIR",
                                 Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"))


def make_idx_dataset(folder: Path, n_train: int = 600, n_test: int = 150, classes: int = 3,
                     size: tuple[int, int] = (16, 16), gz: bool = True,
                     seed: int = 0) -> Path:
    """A learnable IDX dataset: class k lights up its own horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, classes, n).astype(np.uint8)
        labels[:classes] = np.arange(classes)  # every class present in every split
        images = rng.integers(0, 60, (n, h, w)).astype(np.uint8)
        band = max(1, h // classes)
        for i, k in enumerate(labels):
            images[i, k * band:(k + 1) * band, :] = rng.integers(180, 256, (band, w))
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.fixture
def idx_dataset(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "data", **kwargs: object) -> Path:
        return make_idx_dataset(tmp_path / name, **kwargs)  # type: ignore[arg-type]
    return make


@pytest.fixture
def real_mnist() -> Path:
    if not (REAL_MNIST / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found in {REAL_MNIST} (set SMALLSERVE_MNIST_DIR)")
    return REAL_MNIST
