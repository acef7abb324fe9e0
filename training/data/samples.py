"""Write a few held-out test images as PNG files, to try the client on real inputs.

    python -m training.data.samples --out runs/samples --count 5 [--data-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from training.data.mnist import load_mnist


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.data.samples",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="IDX folder (default: the bundled digits)")
    args = parser.parse_args(argv)
    for path in write_samples(args.out, args.count, args.data_dir):
        print(path)


if __name__ == "__main__":
    main()
