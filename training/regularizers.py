"""Weight penalties added to the data loss: L2 (ridge), L1 (lasso) and elastic net (both).

Only weight matrices and convolution kernels (parameters with 2+ dimensions) are penalised;
biases (and any 1-d scale parameters) are not, because shrinking them towards 0 does not reduce
model complexity, it only shifts the decision thresholds.

Conventions (no 1/2 factor anywhere):
    L1  = l1 * sum |w|
    L2  = l2 * sum w^2            (gradient 2 * l2 * w: SGD weight_decay = 2 * l2)
    elastic net = L1 + L2; given as --elastic-net LAMBDA --l1-ratio R it means
    l1 = LAMBDA * R and l2 = LAMBDA * (1 - R).
The penalty is added to the loss, so with Adam it is classic L2 regularisation, not AdamW's
decoupled weight decay.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


def penalised_parameters(model: nn.Module) -> Iterator[torch.Tensor]:
    return (p for p in model.parameters() if p.requires_grad and p.ndim >= 2)


def l1_penalty(model: nn.Module, strength: float) -> torch.Tensor:
    """strength * sum |w| over weight matrices and kernels."""
    return WeightPenalty(l1=strength)(model)


def l2_penalty(model: nn.Module, strength: float) -> torch.Tensor:
    """strength * sum w^2 over weight matrices and kernels (no 1/2 factor)."""
    return WeightPenalty(l2=strength)(model)


def elastic_net_strengths(strength: float, l1_ratio: float) -> tuple[float, float]:
    """(l1, l2) for glmnet-style (lambda, alpha) parameters."""
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio must lie in [0, 1], got {l1_ratio}")
    return strength * l1_ratio, strength * (1.0 - l1_ratio)


class WeightPenalty:
    """Callable penalty(model) -> scalar tensor; None from build() when there is nothing to add."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        if l1 < 0 or l2 < 0:
            raise ValueError("penalty strengths must be >= 0")
        self.l1, self.l2 = l1, l2

    @classmethod
    def build(cls, l1: float = 0.0, l2: float = 0.0) -> WeightPenalty | None:
        return cls(l1, l2) if (l1 > 0 or l2 > 0) else None

    def __call__(self, model: nn.Module) -> torch.Tensor:
        total = torch.zeros((), device=next(model.parameters()).device)
        for p in penalised_parameters(model):
            if self.l1:
                total = total + self.l1 * p.abs().sum()
            if self.l2:
                total = total + self.l2 * p.pow(2).sum()
        return total

    def __repr__(self) -> str:
        return f"WeightPenalty(l1={self.l1}, l2={self.l2})"
