"""Image classifiers. Every model takes normalised images (batch, C, H, W) and returns LOGITS:
softmax belongs to the loss (log_softmax + NLL) and to the exported graph, not to the model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}
ARCHITECTURES = ("softmax", "mlp", "cnn")


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}") \
            from None


class SoftmaxRegression(nn.Module):
    """Multinomial logistic regression: one linear map from pixels to class scores."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        # dropout here drops input pixels, the only place a model without hidden units has
        self.net = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                 nn.Linear(in_features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLP(nn.Module):
    """Fully connected hidden layers, each Linear -> activation -> dropout."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 128),
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), _activation(activation), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """conv(32) -> pool -> conv(64) -> pool -> dropout -> fc(128) -> dropout -> fc.

    hidden lists the fully connected layers between the convolutions and the output.

    Pooling after each 'same' convolution keeps the second convolution on a quarter of the
    pixels: about half the CPU time of conv-conv-pool at the same MNIST accuracy (~99%).
    The convolutional block uses half the given dropout rate; the wide fc layer the full rate.
    """

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int,
                 channels: Sequence[int] = (32, 64), hidden: Sequence[int] = (128,),
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, h, w = in_channels, height, width
        for out in channels:
            layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), _activation(activation),
                       nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"{height}x{width} images are too small for {len(channels)} "
                             "pooling stages")
        self.features = nn.Sequential(*layers, nn.Dropout(dropout / 2))
        head: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
        for size in hidden:
            head += [nn.Linear(width, size), _activation(activation), nn.Dropout(dropout)]
            width = size
        head.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(arch: str, input_shape: tuple[int, int, int], num_classes: int,
                     hidden: Sequence[int] = (256, 128), activation: str = "relu",
                     dropout: float = 0.0) -> nn.Module:
    """A classifier for images of input_shape = (channels, height, width)."""
    c, h, w = input_shape
    if arch == "softmax":
        return SoftmaxRegression(c * h * w, num_classes, dropout)
    if arch == "mlp":
        return MLP(c * h * w, num_classes, hidden, activation, dropout)
    if arch == "cnn":
        return SmallCNN(c, h, w, num_classes, hidden=hidden, activation=activation,
                        dropout=dropout)
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
