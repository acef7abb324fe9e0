"""Multi-label sigmoid taggers: independent per-label probabilities, decided per label."""

from __future__ import annotations

import numpy as np

from serving.errors import InvalidInput
from serving.runners.image import ImageRunner, LabelProbability

DEFAULT_THRESHOLD = 0.5


class TaggerRunner(ImageRunner):
    task = "tag"

    def thresholds(self, override: float = 0.0) -> np.ndarray:
        """The model's tuned per-label thresholds, or one override for every label."""
        if override:
            if not 0 < override <= 1:
                raise InvalidInput("threshold must be in (0, 1]")
            return np.full(len(self.manifest.labels), override, dtype=np.float32)
        tuned = self.manifest.thresholds or [DEFAULT_THRESHOLD] * len(self.manifest.labels)
        return np.asarray(tuned, dtype=np.float32)

    def tags(self, probabilities: np.ndarray,
             thresholds: np.ndarray) -> list[list[LabelProbability]]:
        result = []
        for row in probabilities:
            over = np.flatnonzero(row >= thresholds)
            over = over[np.argsort(-row[over], kind="stable")]
            result.append(self.label_probabilities(row, over))
        return result
