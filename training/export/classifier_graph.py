"""The served image graph: raw pixel values in, probabilities and logits out.

Normalisation and temperature live inside the graph so that every client (ours, tritonclient,
anything speaking KServe v2) sends plain pixel values and gets probabilities, with no
preprocessing code to keep in sync with training. A classifier ends in a softmax (probabilities
sum to 1); a multi-label tagger in one sigmoid per label (each in [0, 1], no sum constraint).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from serving.repository.graph_io import IMAGE_OUTPUTS, MODEL_FILE, PIXELS

INPUT_NAME, OUTPUT_NAMES, GRAPH_FILE = PIXELS, IMAGE_OUTPUTS, MODEL_FILE
HEADS = ("softmax", "sigmoid")


class ClassifierGraph(nn.Module):
    """pixels (batch, C, H, W) float32 in 0..255 -> (softmax(logits / T), logits), or with
    head="sigmoid" (taggers) -> (sigmoid(logits / T), logits)."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 temperature: float = 1.0, head: str = "softmax") -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.head = head
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (pixels / 255.0 - self.mean) / self.std
        logits = self.model(x)
        if self.head == "sigmoid":
            # independent per label; saturates to exactly 0 or 1, never NaN
            return torch.sigmoid(logits / self.temperature), logits
        # softmax subtracts the row max internally, so all-0 / all-255 inputs stay finite
        probabilities = torch.softmax(logits / self.temperature, dim=-1)
        return probabilities, logits


def parity_batches(images: np.ndarray, max_samples: int = 256) -> list[dict[str, np.ndarray]]:
    """Real held-out images (N, C, H, W uint8) plus an all-black and an all-white image, as one
    full batch and as batches of 1 and 3, so the dynamic batch axis is exercised too."""
    real = images[:max_samples].astype(np.float32)
    black = np.zeros_like(real[:1])
    white = np.full_like(real[:1], 255.0)
    full = np.concatenate([real, black, white])
    return [{INPUT_NAME: full}, {INPUT_NAME: real[:1]}, {INPUT_NAME: black},
            {INPUT_NAME: white}, {INPUT_NAME: full[:3]}]
