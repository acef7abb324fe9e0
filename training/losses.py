"""Training losses in PyTorch."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    """-log softmax(z)_t as log_softmax + NLL: never takes the log of an underflowed softmax.

    Its gradient with respect to the logits is y - t (softmax minus one-hot), per example.
    """
    return F.nll_loss(F.log_softmax(logits, dim=-1), targets, reduction=reduction)


def binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                         pos_weight: torch.Tensor | None = None,
                         reduction: str = "mean") -> torch.Tensor:
    """Multi-label BCE from logits: per example, the sum over labels of
    -[w_l t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], then the mean (or sum) over examples.

    Computed as max(z, 0) - z t + log(1 + exp(-|z|)) (BCEWithLogits), so a saturated sigmoid
    never reaches log(0). With w = 1 its gradient with respect to each logit is sigmoid(z) - t.
    pos_weight (one w_l per label) scales the positive term for imbalanced labels.
    """
    per_label = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype),
                                                   pos_weight=pos_weight, reduction="none")
    per_example = per_label.sum(dim=-1)
    if reduction == "mean":
        return per_example.mean()
    if reduction == "sum":
        return per_example.sum()
    if reduction == "none":
        return per_example
    raise ValueError(f"unknown reduction {reduction!r}")


def balancing_pos_weight(targets: np.ndarray | torch.Tensor,
                         max_weight: float = 10.0) -> torch.Tensor:
    """negatives / positives per label, clipped to [1 / max_weight, max_weight].

    The clip keeps a label with a handful of positives (or none) from dominating the loss.
    """
    t = torch.as_tensor(np.asarray(targets), dtype=torch.float64)
    positives = t.sum(dim=0)
    negatives = len(t) - positives
    weight = negatives / positives.clamp(min=1e-12)
    return weight.clamp(1.0 / max_weight, max_weight).to(torch.float32)
