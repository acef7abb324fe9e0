"""What every images-in, per-label-scores-out model shares: input checks, decoding, top-k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.preprocess.images import decode_images, image_geometry
from serving.preprocess.tensors import image_batch
from serving.repository import Manifest
from serving.runners.base import Runner

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class LabelProbability:
    index: int
    label: str
    probability: float


class ImageInput:
    """Pixel tensors or encoded images -> the float32 [N, C, H, W] batch the manifest describes."""

    manifest: Manifest

    @property
    def input_name(self) -> str:
        return self.manifest.inputs[0].name

    @property
    def chw(self) -> tuple[int, int, int]:
        return image_geometry(self.manifest.preprocessing)

    def pixels_from_array(self, array: np.ndarray) -> np.ndarray:
        return image_batch(array, self.chw, self.input_name)

    def pixels_from_images(self, encoded: list[bytes]) -> np.ndarray:
        return decode_images(encoded, self.manifest.preprocessing)


class ImageRunner(ImageInput, Runner):
    """Images in, one score per label out (classifiers and taggers)."""

    def warmup(self) -> None:
        self.probabilities(np.zeros((1, *self.chw), dtype=np.float32))

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return self.infer({self.input_name: pixels}, ["probabilities"])["probabilities"]

    def label_probabilities(self, row: np.ndarray,
                            indices: np.ndarray) -> list[LabelProbability]:
        labels = self.manifest.labels
        return [LabelProbability(int(i), labels[i], float(row[i])) for i in indices]

    def top_k(self, probabilities: np.ndarray, k: int) -> list[list[LabelProbability]]:
        k = min(k or DEFAULT_TOP_K, probabilities.shape[1])
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [self.label_probabilities(row, idx)
                for row, idx in zip(probabilities, order, strict=True)]
