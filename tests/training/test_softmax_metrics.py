from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.losses import cross_entropy as torch_cross_entropy
from training.metrics import (
    accuracy,
    confusion_matrix,
    cross_entropy,
    cross_entropy_from_logits,
    ece,
    log_softmax,
    softmax,
)


def test_softmax_hand_computed() -> None:
    p = softmax(np.array([1.0, 2.0, 3.0]))
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(p, e / e.sum())
    np.testing.assert_allclose(p, [0.09003057, 0.24472847, 0.66524096], atol=1e-8)


def test_softmax_is_stable_for_huge_logits() -> None:
    p = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0]])
    np.testing.assert_allclose(log_softmax(np.array([1000.0, 0.0]))[1], -1000.0)


def test_course_worked_example_cross_entropy() -> None:
    probs = np.array([[0.9099, 0.0016, 0.0885]])
    assert math.isclose(-math.log(0.9099), 0.0944, abs_tol=5e-5)
    assert cross_entropy(probs, np.array([0])) == pytest.approx(0.0944, abs=5e-5)
    # the same from logits whose softmax is that distribution
    assert cross_entropy_from_logits(np.log(probs), np.array([0])) == pytest.approx(0.0944,
                                                                                     abs=5e-5)


def test_torch_cross_entropy_matches_numpy() -> None:
    logits = np.random.default_rng(0).normal(size=(6, 4)) * 3
    labels = np.array([0, 1, 2, 3, 0, 1])
    got = torch_cross_entropy(torch.tensor(logits), torch.tensor(labels)).item()
    assert got == pytest.approx(cross_entropy_from_logits(logits, labels), rel=1e-12)


def test_gradient_is_y_minus_t() -> None:
    z = torch.tensor([[2.0, -1.0, 0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([2])
    torch_cross_entropy(z, t, reduction="sum").backward()
    y = torch.softmax(z.detach(), dim=-1)
    onehot = torch.nn.functional.one_hot(t, 4).double()
    torch.testing.assert_close(z.grad, y - onehot)


def test_accuracy_and_confusion_matrix() -> None:
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    labels = np.array([0, 1, 1, 1])
    assert accuracy(probs, labels) == 0.75
    np.testing.assert_array_equal(confusion_matrix(labels, probs.argmax(1), 2),
                                  [[1, 0], [1, 2]])


def test_ece_hand_example() -> None:
    # confidences 0.9, 0.9 (one right one wrong) and 0.6 (right); 15 bins of width 1/15:
    # 0.9 falls into bin 13 (0.8667, 0.9333], 0.6 into bin 8 (0.5333, 0.6]
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    labels = np.array([0, 1, 1])
    expected = 2 / 3 * abs(0.5 - 0.9) + 1 / 3 * abs(1.0 - 0.6)
    assert ece(probs, labels, n_bins=15) == pytest.approx(expected)
    assert expected == pytest.approx(0.4)


def test_ece_zero_when_calibrated_and_bins_matter() -> None:
    probs = np.array([[0.75, 0.25]] * 4)
    labels = np.array([0, 0, 0, 1])
    assert ece(probs, labels) == pytest.approx(0.0)
    # one bin: |mean acc - mean conf| of everything; 15 bins separate 0.95 from 0.55
    p = np.array([[0.95, 0.05], [0.55, 0.45]])
    t = np.array([0, 1])
    assert ece(p, t, n_bins=1) == pytest.approx(abs(0.5 - 0.75))
    assert ece(p, t, n_bins=15) == pytest.approx(0.5 * 0.05 + 0.5 * 0.55)
