from __future__ import annotations

import numpy as np
import pytest

from training.calibration import fit_temperature
from training.metrics import cross_entropy_from_logits, ece, softmax


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits that are right ~70% of the time but always ~99.9% sure of themselves."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    predicted = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 5, n))
    logits = rng.normal(0, 0.5, (n, 5))
    logits[np.arange(n), predicted] += 8.0
    return logits, labels


def test_temperature_scaling_reduces_nll_and_ece() -> None:
    logits, labels = _overconfident()
    t = fit_temperature(logits, labels)
    assert t > 1.5  # overconfident -> soften
    before = cross_entropy_from_logits(logits, labels)
    after = cross_entropy_from_logits(logits / t, labels)
    assert after < before - 0.5
    assert ece(softmax(logits / t), labels) < ece(softmax(logits), labels) / 3
    # scaling never changes the predicted class
    assert (np.argmax(logits / t, 1) == np.argmax(logits, 1)).all()


def test_underconfident_logits_get_sharpened() -> None:
    logits, labels = _overconfident()
    t = fit_temperature(logits / 40.0, labels)
    assert t < 1.0


def test_temperature_is_a_minimum_of_nll() -> None:
    logits, labels = _overconfident(seed=1)
    t = fit_temperature(logits, labels)
    nll = cross_entropy_from_logits(logits / t, labels)
    for factor in (0.9, 1.1):
        assert cross_entropy_from_logits(logits / (t * factor), labels) >= nll - 1e-9
    assert t == pytest.approx(fit_temperature(logits, labels))
