"""Per-label scores -> ranked labels (top-k) and decided tags (per-label thresholds).

Plain functions of a probability tensor and the manifest, so every front end ranks and decides
the same way without asking which runner produced the scores.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from serving.errors import InvalidInput
from serving.repository import Manifest

DEFAULT_TOP_K = 5
DEFAULT_THRESHOLD = 0.5


class LabelProbability(NamedTuple):
    index: int
    label: str
    probability: float


def _label_probabilities(row: np.ndarray, indices: np.ndarray,
                         labels: list[str]) -> list[LabelProbability]:
    # plain Python numbers once, not a numpy scalar per element
    return [LabelProbability(i, labels[i], p)
            for i, p in zip(indices.tolist(), row[indices].tolist(), strict=True)]


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[list[LabelProbability]]:
    """The k most probable labels of each row (0: the default k), most probable first."""
    if k < 0:
        raise InvalidInput("top_k must not be negative")
    k = min(k or DEFAULT_TOP_K, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [_label_probabilities(row, idx, labels)
            for row, idx in zip(probabilities, order, strict=True)]


def thresholds(manifest: Manifest, override: float = 0.0) -> np.ndarray:
    """The model's tuned per-label thresholds, or one override for every label."""
    if override:
        if not 0 < override <= 1:
            raise InvalidInput("threshold must be in (0, 1]")
        return np.full(len(manifest.labels), override, dtype=np.float32)
    tuned = manifest.thresholds or [DEFAULT_THRESHOLD] * len(manifest.labels)
    return np.asarray(tuned, dtype=np.float32)


def tags(probabilities: np.ndarray, cutoffs: np.ndarray,
         labels: list[str]) -> list[list[LabelProbability]]:
    """Each row's labels at or over their threshold, most probable first."""
    result = []
    for row in probabilities:
        over = np.flatnonzero(row >= cutoffs)
        over = over[np.argsort(-row[over], kind="stable")]
        result.append(_label_probabilities(row, over, labels))
    return result
