"""Train / validation / test split of a folder dataset by fractions, drawn with its own seed.

The seed is never the training seed, so the held-out images stay the same from run to run.
Every split must get at least one image: export, parity, threshold tuning and scoring each
read one of them, and an empty one would fail only after the whole training run.
"""

from __future__ import annotations

import numpy as np

from training.errors import DataError


def split_sizes(n: int, val_fraction: float, test_fraction: float,
                where: str) -> tuple[int, int, int]:
    """(train, validation, test) sizes of n items; DataError naming the options when one is
    empty."""
    if not val_fraction + test_fraction < 1:
        raise DataError(f"{where}: --val-fraction {val_fraction:g} and --test-fraction "
                        f"{test_fraction:g} leave no image for training; their sum must be "
                        "below 1")
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    sizes = {"train": n - n_test - n_val, "validation": n_val, "test": n_test}
    empty = [name for name, size in sizes.items() if size < 1]
    if empty:
        shown = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise DataError(f"{where}: {n} images are too few for a train / validation / test "
                        f"split at --val-fraction {val_fraction:g} and --test-fraction "
                        f"{test_fraction:g} ({shown}): the {' and '.join(empty)} split would "
                        "be empty")
    return sizes["train"], n_val, n_test


def fraction_split(n: int, val_fraction: float, test_fraction: float, where: str,
                   split_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, validation, test) of n items in a fixed random order."""
    _, n_val, n_test = split_sizes(n, val_fraction, test_fraction, where)
    order = np.random.default_rng(split_seed).permutation(n)
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return train, val, test
