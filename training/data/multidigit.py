"""Multi-digit canvases: 1 to 4 real MNIST digits on one dark image, reproducible from a seed.

    digits = load_mnist(data_dir)                 # train / validation / test digit splits
    data = make_multidigit(digits, sizes=(20000, 2000, 4000), seed=0)
    data.train.images      uint8 (N, 64, 64)
    data.train.tags        uint8 (N, 10): which digits appear (multi-hot)
    data.train.boxes[i]    int64 (k, 4): x0, y0, x1, y1 (exclusive) of each digit's ink
    data.train.sequences[i]  int64 (k,): the digits read left to right ("307" -> [3, 0, 7])

Each canvas split is drawn only from the digit split of the same name, so no source digit is
shared between training, validation and test canvases. Within a canvas every digit is a
different source image; the same class may appear twice (the tags then show it once, the
sequence twice). Digits are pasted as their ink crop (a tight box around the strokes) at a
random position; two crops may overlap by at most `max_overlap` of the smaller one, and the
pixels combine with max() so overlapping strokes stay visible, as in MNIST's light-on-dark style.

This module only composes images; the tagger and the captioning task read what they need from
Canvases (tags for one, sequences and boxes for the other).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.mnist import ImageDataset, Split
from training.data.tagging import TaggingDataset, TaggingSplit

CANVAS_SIZE = 64
MIN_DIGITS, MAX_DIGITS = 1, 4
MAX_OVERLAP = 0.1
# Grey level from which a pixel counts as ink when cropping a digit. Above 0 on purpose: the
# rebuilt MNIST training images have backgrounds up to one grey level off zero.
INK_LEVEL = 32
CANVAS_SEED = 0
SPLITS = ("train", "validation", "test")
PLACEMENT_TRIES = 50  # positions tried for one digit before the whole canvas is redrawn
CANVAS_TRIES = 100  # redraws of one canvas before giving up: the digits cannot fit


@dataclass(frozen=True)
class Canvases:
    """N canvases; per canvas, boxes, sequences and sources list its digits left to right."""

    images: np.ndarray  # uint8 (N, H, W)
    tags: np.ndarray  # uint8 (N, num_classes)
    boxes: list[np.ndarray]  # int64 (k, 4) per canvas: x0, y0, x1, y1, x1 and y1 exclusive
    sequences: list[np.ndarray]  # int64 (k,) per canvas: digit classes left to right
    sources: list[np.ndarray]  # int64 (k,) per canvas: indices into the source digit split

    def __len__(self) -> int:
        return len(self.images)

    def sequence_text(self, i: int) -> str:
        return "".join(str(int(d)) for d in self.sequences[i])

    def as_tagging(self) -> TaggingSplit:
        return TaggingSplit(self.images[:, None], self.tags)


@dataclass(frozen=True)
class MultiDigitData:
    train: Canvases
    validation: Canvases
    test: Canvases
    labels: list[str]
    settings: dict  # the generator's parameters, for the manifest

    def as_tagging(self, source: str) -> TaggingDataset:
        return TaggingDataset(self.train.as_tagging(), self.validation.as_tagging(),
                              self.test.as_tagging(), self.labels, "grayscale",
                              f"multi-digit canvases from {source}", dict(self.settings))


def ink_boxes(images: np.ndarray, level: int = INK_LEVEL) -> np.ndarray:
    """(N, 4) x0, y0, x1, y1 (exclusive) of the pixels >= level; the whole image when none."""
    ink = images >= level
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    n, h, w = images.shape
    boxes = np.empty((n, 4), dtype=np.int64)
    boxes[:, 0] = np.where(cols.any(1), cols.argmax(1), 0)
    boxes[:, 1] = np.where(rows.any(1), rows.argmax(1), 0)
    boxes[:, 2] = np.where(cols.any(1), w - cols[:, ::-1].argmax(1), w)
    boxes[:, 3] = np.where(rows.any(1), h - rows[:, ::-1].argmax(1), h)
    return boxes


def overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area of boxes a and b over the area of the smaller one."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih) / float(smaller)


def generate_canvases(digits: Split, count: int, seed: int, canvas_size: int = CANVAS_SIZE,
                      min_digits: int = MIN_DIGITS, max_digits: int = MAX_DIGITS,
                      max_overlap: float = MAX_OVERLAP, num_classes: int = 10) -> Canvases:
    """count canvases composed from `digits`; the same arguments always give the same canvases.

    The number of digits per canvas is uniform over [min_digits, max_digits].
    """
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    if max_digits > len(digits):
        raise ValueError(f"{max_digits} digits per canvas but the split holds {len(digits)}")
    if not 0.0 <= max_overlap <= 1.0:
        raise ValueError(f"max_overlap must lie in [0, 1], got {max_overlap}")
    crops = ink_boxes(digits.images)
    too_big = (crops[:, 2] - crops[:, 0] > canvas_size) | (crops[:, 3] - crops[:, 1] > canvas_size)
    if too_big.any():
        raise ValueError(f"digits up to {digits.images.shape[1:]} do not fit a "
                         f"{canvas_size}x{canvas_size} canvas")
    rng = np.random.default_rng(seed)
    images = np.zeros((count, canvas_size, canvas_size), dtype=np.uint8)
    tags = np.zeros((count, num_classes), dtype=np.uint8)
    boxes, sequences, sources = [], [], []
    for i in range(count):
        k = int(rng.integers(min_digits, max_digits + 1))
        picked, placed = _place(rng, crops, len(digits), k, canvas_size, max_overlap)
        order = np.lexsort((placed[:, 1], placed[:, 0] + placed[:, 2]))  # by x centre, then y
        picked, placed = picked[order], placed[order]
        for src, (x0, y0, x1, y1) in zip(picked, placed, strict=True):
            cx0, cy0, cx1, cy1 = crops[src]
            region = images[i, y0:y1, x0:x1]
            np.maximum(region, digits.images[src, cy0:cy1, cx0:cx1], out=region)
        labels = digits.labels[picked]
        if labels.max() >= num_classes:
            raise ValueError(f"digit label {int(labels.max())} >= num_classes {num_classes}")
        tags[i, labels] = 1
        boxes.append(placed)
        sequences.append(labels.astype(np.int64))
        sources.append(picked)
    return Canvases(images, tags, boxes, sequences, sources)


def _place(rng: np.random.Generator, crops: np.ndarray, n_digits: int, k: int, size: int,
           max_overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """k distinct source indices and their canvas boxes, overlapping at most max_overlap."""
    for _ in range(CANVAS_TRIES):
        picked = rng.choice(n_digits, size=k, replace=False).astype(np.int64)
        placed: list[np.ndarray] = []
        for src in picked:
            w = int(crops[src, 2] - crops[src, 0])
            h = int(crops[src, 3] - crops[src, 1])
            for _ in range(PLACEMENT_TRIES):
                x0 = int(rng.integers(0, size - w + 1))
                y0 = int(rng.integers(0, size - h + 1))
                box = np.array([x0, y0, x0 + w, y0 + h], dtype=np.int64)
                if all(overlap_fraction(box, other) <= max_overlap for other in placed):
                    placed.append(box)
                    break
            else:
                break  # this digit does not fit beside the others: redraw the canvas
        if len(placed) == k:
            return picked, np.stack(placed)
    raise ValueError(f"could not place {k} digits on a {size}x{size} canvas with overlap "
                     f"<= {max_overlap} in {CANVAS_TRIES} tries; use a larger canvas, fewer "
                     "digits or more overlap")


def make_multidigit(digits: ImageDataset, sizes: tuple[int, int, int], seed: int = CANVAS_SEED,
                    canvas_size: int = CANVAS_SIZE, min_digits: int = MIN_DIGITS,
                    max_digits: int = MAX_DIGITS,
                    max_overlap: float = MAX_OVERLAP) -> MultiDigitData:
    """Train / validation / test canvases, each drawn only from the digit split of that name.

    Each split has its own random stream derived from (seed, split), so changing one split's
    size never changes the canvases of another.
    """
    splits = {}
    for index, (name, count) in enumerate(zip(SPLITS, sizes, strict=True)):
        splits[name] = generate_canvases(
            getattr(digits, name), count, seed=_split_seed(seed, index), canvas_size=canvas_size,
            min_digits=min_digits, max_digits=max_digits, max_overlap=max_overlap,
            num_classes=digits.num_classes)
    settings = {"canvas_size": canvas_size, "min_digits": min_digits, "max_digits": max_digits,
                "max_overlap": max_overlap, "canvas_seed": seed, "ink_level": INK_LEVEL,
                "canvases": dict(zip(SPLITS, sizes, strict=True)),
                "source_digits": {name: len(getattr(digits, name)) for name in SPLITS}}
    return MultiDigitData(splits["train"], splits["validation"], splits["test"],
                          list(digits.class_names), settings)


def _split_seed(seed: int, index: int) -> int:
    # a fixed mix of (seed, split): independent streams without storing any state
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
