"""Data sources. numpy only: the torch-free evaluator imports these too."""

from training.data.idx import DataError, read_idx, write_idx
from training.data.mnist import ImageDataset, Split, load_mnist

__all__ = ["DataError", "ImageDataset", "Split", "load_mnist", "read_idx", "write_idx"]
