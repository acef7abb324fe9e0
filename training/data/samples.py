"""Write a few held-out test images as PNG files, to try the client on real inputs.

    python -m training.data.samples --out runs/samples --count 5 [--data-dir DIR]
    python -m training.data.samples --out runs/canvases --canvases [--count 5] [--data-dir DIR]

Digits (for the classifiers) are named by their label; multi-digit canvases (for the tagger and
the captioner) by their digits read left to right. Both come from the test split only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from training.data.mnist import load_mnist
from training.data.multidigit import make_multidigit


def write_samples(out: Path, count: int, data_dir: Path | None = None) -> list[Path]:
    dataset = load_mnist(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    # spread over the split, which may be ordered by class
    picks = np.linspace(0, len(dataset.test) - 1, min(count, len(dataset.test))).astype(int)
    for i in picks:
        label = dataset.class_names[int(dataset.test.labels[i])]
        path = out / f"test-{i:05d}-label-{label}.png"
        Image.fromarray(dataset.test.images[i]).save(path)
        paths.append(path)
    return paths


def write_canvases(out: Path, count: int, data_dir: Path | None = None) -> list[Path]:
    """The first `count` test canvases the tagger and captioner tasks draw with their default
    settings, composed from test digits only."""
    canvases = make_multidigit(load_mnist(data_dir), (0, 0, count)).test
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(canvases)):
        path = out / f"canvas-{i:05d}-digits-{canvases.sequence_text(i)}.png"
        Image.fromarray(canvases.images[i]).save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.data.samples",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--canvases", action="store_true",
                        help="multi-digit canvases (tagger, captioner) instead of single digits")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="IDX folder (default: the bundled digits)")
    args = parser.parse_args(argv)
    write = write_canvases if args.canvases else write_samples
    for path in write(args.out, args.count, args.data_dir):
        print(path)


if __name__ == "__main__":
    main()
