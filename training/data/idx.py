"""MNIST's IDX files as a training data source: the official file names, image/label pairs.

The IDX format itself is read by serving.formats.idx, shared with the client.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.formats import idx as idx_format
from serving.formats.idx import write_idx
from training.errors import DataError

__all__ = ["DataError", "find_idx_file", "read_idx", "read_image_label_pair", "write_idx"]


def read_idx(path: Path | str) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a native-endian numpy array."""
    try:
        return idx_format.read_idx(path)
    except idx_format.IdxError as e:
        raise DataError(str(e)) from e


def find_idx_file(folder: Path, stem: str) -> Path:
    """The file for e.g. stem 'train-images-idx3-ubyte', with or without .gz."""
    # The dotted spelling ('train-images.idx3-ubyte') is how some mirrors ship the same files.
    dotted = stem.replace("-idx", ".idx")
    candidates = [stem, stem + ".gz", dotted, dotted + ".gz"]
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / stem}: file not found (looked for {', '.join(candidates)})")


def read_image_label_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 of one split ('train' or 't10k')."""
    images_path = find_idx_file(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = find_idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images of shape (N, H, W), "
                        f"found {images.dtype} {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{labels_path}: expected integer labels of shape (N,), "
                        f"found {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{labels_path}: label {int(labels.min())} is out of range (negative)")
    return images, labels.astype(np.int64)
