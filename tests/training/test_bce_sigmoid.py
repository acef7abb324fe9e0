"""Binary cross-entropy and the sigmoid against hand-computed values (torch and numpy agree)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.losses import balancing_pos_weight, binary_cross_entropy
from training.multilabel_metrics import binary_cross_entropy as np_bce
from training.multilabel_metrics import binary_cross_entropy_from_logits, sigmoid

# The course's worked example: five labels, their sigmoid outputs and the true tags.
COURSE_PROBS = [0.775, 0.116, 0.884, 0.744, 0.320]
COURSE_TARGETS = [1, 0, 1, 0, 0]


def test_course_worked_example_by_hand() -> None:
    # -(ln .775 + ln(1 - .116) + ln .884 + ln(1 - .744) + ln(1 - .320)), term by term
    terms = [0.254892, 0.123298, 0.123298, 1.362578, 0.385662]
    for got, want in zip([-math.log(0.775), -math.log(1 - 0.116), -math.log(0.884),
                          -math.log(1 - 0.744), -math.log(1 - 0.320)], terms, strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    expected = sum(terms)
    assert expected == pytest.approx(2.2497, abs=1e-4)  # about 2.25, not 2.0
    probs, targets = np.array([COURSE_PROBS]), np.array([COURSE_TARGETS])
    assert np_bce(probs, targets) == pytest.approx(expected, abs=1e-5)
    # the same through the logits the training loss sees: z = ln(p / (1 - p))
    logits = np.log(probs / (1 - probs))
    assert binary_cross_entropy_from_logits(logits, targets) == pytest.approx(expected, abs=1e-5)
    torch_loss = binary_cross_entropy(torch.tensor(logits), torch.tensor(targets))
    assert torch_loss.item() == pytest.approx(expected, abs=1e-5)


def test_loss_sums_over_labels_and_averages_over_examples() -> None:
    z = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    # every cell costs ln 2 at z = 0: two labels per example
    assert binary_cross_entropy(z, t).item() == pytest.approx(2 * math.log(2))
    assert binary_cross_entropy(z, t, reduction="sum").item() == pytest.approx(6 * math.log(2))
    assert binary_cross_entropy(z, t, reduction="none").shape == (3,)


def test_gradient_is_sigmoid_minus_target() -> None:
    z = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 4.0]], dtype=torch.float64,
                     requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    binary_cross_entropy(z, t, reduction="sum").backward()
    expected = 1 / (1 + np.exp(-z.detach().numpy())) - t.numpy()
    np.testing.assert_allclose(z.grad.numpy(), expected, atol=1e-12)
    # by hand for one cell: sigmoid(2) - 1
    assert z.grad[0, 0].item() == pytest.approx(1 / (1 + math.exp(-2)) - 1, abs=1e-12)


def test_stable_for_huge_logits() -> None:
    z = torch.tensor([[1000.0, -1000.0, 1000.0, -1000.0]])
    t = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    # right and confident costs 0; wrong and confident costs |z|, never inf or nan
    assert binary_cross_entropy(z, t).item() == pytest.approx(2000.0)
    assert binary_cross_entropy_from_logits(z.numpy(), t.numpy()) == pytest.approx(2000.0)
    s = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s, [0.0, 0.5, 1.0])


def test_pos_weight_scales_the_positive_term() -> None:
    z = torch.zeros(1, 2)
    t = torch.tensor([[1.0, 0.0]])
    loss = binary_cross_entropy(z, t, pos_weight=torch.tensor([3.0, 5.0]))
    # positive cell: 3 * ln 2; negative cell: ln 2 (pos_weight leaves negatives alone)
    assert loss.item() == pytest.approx(4 * math.log(2))


def test_balancing_pos_weight_is_negatives_over_positives_clipped() -> None:
    targets = np.array([[1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [1, 1, 0, 0]])
    w = balancing_pos_weight(targets, max_weight=10.0)
    # label 0: 2 neg / 2 pos; label 1: 3 / 1; label 2: no positive -> clip; label 3: 1 / 3
    np.testing.assert_allclose(w.numpy(), [1.0, 3.0, 10.0, 1 / 3], rtol=1e-6)
    assert balancing_pos_weight(targets, max_weight=2.0).numpy()[1] == pytest.approx(2.0)
