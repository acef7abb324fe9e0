from __future__ import annotations

import pytest
import torch
from torch import nn

from training.regularizers import (
    WeightPenalty,
    elastic_net_strengths,
    l1_penalty,
    l2_penalty,
)


@pytest.fixture
def tiny() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        model[0].bias.copy_(torch.tensor([100.0, -100.0]))  # biases must not count
        model[1].weight.copy_(torch.tensor([[-1.0, 2.0]]))
        model[1].bias.fill_(50.0)
    return model


def test_l1_is_lambda_times_sum_abs_weights(tiny: nn.Module) -> None:
    assert l1_penalty(tiny, 0.1).item() == pytest.approx(0.1 * (1 + 2 + 3 + 0.5 + 1 + 2))


def test_l2_is_lambda_times_sum_squares_without_half(tiny: nn.Module) -> None:
    assert l2_penalty(tiny, 0.01).item() == pytest.approx(0.01 * (1 + 4 + 9 + 0.25 + 1 + 4))


def test_elastic_net_is_the_sum(tiny: nn.Module) -> None:
    l1, l2 = elastic_net_strengths(0.2, l1_ratio=0.25)
    assert (l1, l2) == pytest.approx((0.05, 0.15))
    value = WeightPenalty(l1, l2)(tiny).item()
    assert value == pytest.approx(0.05 * 9.5 + 0.15 * 19.25)


def test_penalty_gradient_skips_biases(tiny: nn.Module) -> None:
    WeightPenalty(l1=0.0, l2=0.5)(tiny).backward()
    torch.testing.assert_close(tiny[0].weight.grad, 2 * 0.5 * tiny[0].weight.detach())
    assert tiny[0].bias.grad is None


def test_convolution_kernels_are_penalised() -> None:
    conv = nn.Conv2d(1, 1, 2)
    with torch.no_grad():
        conv.weight.fill_(2.0)
    assert l1_penalty(conv, 1.0).item() == pytest.approx(8.0)


def test_build_returns_none_without_penalty() -> None:
    assert WeightPenalty.build(0.0, 0.0) is None
    with pytest.raises(ValueError):
        WeightPenalty(l1=-1.0)
    with pytest.raises(ValueError):
        elastic_net_strengths(1.0, 1.5)
