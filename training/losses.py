"""Training losses in PyTorch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    """-log softmax(z)_t as log_softmax + NLL: never takes the log of an underflowed softmax.

    Its gradient with respect to the logits is y - t (softmax minus one-hot), per example.
    """
    return F.nll_loss(F.log_softmax(logits, dim=-1), targets, reduction=reduction)
