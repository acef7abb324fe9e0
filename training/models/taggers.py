"""Multi-label taggers: normalised images (batch, C, H, W) in, one LOGIT per label out.

The sigmoid belongs to the loss (BCE with logits) and to the exported graph, not to the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from training.models.classifiers import MLP, _activation

TAGGER_ARCHITECTURES = ("cnn", "mlp")


class TaggerCNN(nn.Module):
    """Stages of conv3x3 -> batch norm -> activation -> 2x2 max pool, then global max and mean
    pooling, then fully connected `hidden` layers and one logit per label.

    Global pooling asks "does this feature fire anywhere?", which is the question a tag asks:
    a digit or a dog counts wherever it is. It also makes the network independent of the input
    size (any size with at least 2**len(channels) pixels a side). Max pooling catches small
    objects, the mean the overall scene; both go to the head.
    """

    def __init__(self, in_channels: int, num_labels: int,
                 channels: Sequence[int] = (16, 32, 64, 64), hidden: Sequence[int] = (64,),
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        if not channels:
            raise ValueError("a CNN needs at least one convolutional stage")
        layers: list[nn.Module] = []
        c = in_channels
        for out in channels:
            # no conv bias: batch norm's shift replaces it
            layers += [nn.Conv2d(c, out, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(out), _activation(activation), nn.MaxPool2d(2)]
            c = out
        self.features = nn.Sequential(*layers)
        self.min_size = 2 ** len(channels)
        head: list[nn.Module] = [nn.Dropout(dropout)]
        width = 2 * c
        for size in hidden:
            head += [nn.Linear(width, size), _activation(activation), nn.Dropout(dropout)]
            width = size
        head.append(nn.Linear(width, num_labels))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)
        return self.head(pooled)


def init_output_bias(model: nn.Module, frequencies: np.ndarray, eps: float = 1e-3) -> None:
    """Set the last layer's biases to the log-odds of each label's training frequency.

    The untrained network then predicts the label-frequency baseline instead of 0.5 for every
    label, so the first epochs learn from the images rather than unlearning a wrong prior
    (with 40 rare labels the initial BCE drops from 40 ln 2 = 27.7 to about 10 per image).
    """
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    p = np.clip(np.asarray(frequencies, dtype=np.float64), eps, 1 - eps)
    with torch.no_grad():
        last.bias.copy_(torch.from_numpy(np.log(p / (1 - p))))


def build_tagger(arch: str, input_shape: tuple[int, int, int], num_labels: int,
                 hidden: Sequence[int] = (64,), channels: Sequence[int] = (16, 32, 64, 64),
                 activation: str = "relu", dropout: float = 0.0) -> nn.Module:
    """A tagger for images of input_shape = (channels, height, width)."""
    c, h, w = input_shape
    if arch == "mlp":
        # the classifiers' MLP already ends in one unnormalised score per output
        return MLP(c * h * w, num_labels, hidden, activation, dropout)
    if arch == "cnn":
        model = TaggerCNN(c, num_labels, channels, hidden, activation, dropout)
        if min(h, w) < model.min_size:
            raise ValueError(f"{h}x{w} images are too small for {len(channels)} pooling "
                             f"stages (need {model.min_size} pixels a side)")
        return model
    raise ValueError(f"unknown tagger architecture {arch!r}; choose from "
                     f"{', '.join(TAGGER_ARCHITECTURES)}")
