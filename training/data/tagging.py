"""What every multi-label tagging source hands the trainer: images and multi-hot targets.

Both sources (the multi-digit canvases and a bring-your-own image folder) produce a
TaggingDataset, so the tagger task trains, tunes and scores them with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLORS = ("grayscale", "rgb")


@dataclass(frozen=True)
class TaggingSplit:
    images: np.ndarray  # uint8 (N, C, H, W), raw 0..255 as the exported graph takes them
    targets: np.ndarray  # uint8 (N, L): targets[i, l] == 1 when image i carries label l

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.targets.ndim != 2 \
                or len(self.images) != len(self.targets):
            raise ValueError(f"images {self.images.shape} and targets {self.targets.shape} "
                             "must be (N, C, H, W) and (N, L)")

    def __len__(self) -> int:
        return len(self.targets)

    def head(self, n: int) -> TaggingSplit:
        return TaggingSplit(self.images[:n], self.targets[:n])

    def take(self, index: np.ndarray) -> TaggingSplit:
        return TaggingSplit(self.images[index], self.targets[index])


@dataclass(frozen=True)
class TaggingDataset:
    train: TaggingSplit
    validation: TaggingSplit
    test: TaggingSplit
    labels: list[str]
    color: str  # "grayscale" or "rgb": how the server converts uploaded images
    source: str  # human-readable origin, recorded in the manifest
    details: dict  # source-specific facts for the manifest (canvas size, CSV path ...)

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise ValueError(f"color must be one of {COLORS}, got {self.color!r}")
        for split in (self.train, self.validation, self.test):
            if split.targets.shape[1] != len(self.labels):
                raise ValueError(f"targets have {split.targets.shape[1]} columns for "
                                 f"{len(self.labels)} labels")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) as the exported graph takes them."""
        _, c, h, w = self.train.images.shape
        return int(c), int(h), int(w)
