from __future__ import annotations

import numpy as np
import pytest

from serving.repository import Calibration
from training.calibration import choose_temperature, fit_temperature
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


def _calibrated_with_outliers(n: int = 4000, k: int = 10,
                              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that are right as often as they say, plus 2% of confident mistakes: the
    NLL-optimal temperature softens everything to pay for the mistakes, which makes every
    other probability underconfident (ECE worse)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    conf = rng.uniform(0.3, 0.999, n)
    predicted = np.where(rng.random(n) < conf, labels, (labels + rng.integers(1, k, n)) % k)
    logits = np.zeros((n, k))
    logits[np.arange(n), predicted] = np.log(conf / ((1 - conf) / (k - 1)))
    bad = rng.random(n) < 0.02
    logits[bad] = 0.0
    logits[bad, (labels[bad] + 1) % k] = 25.0
    return logits, labels


def test_choose_temperature_keeps_scaling_that_lowers_nll_and_ece() -> None:
    logits, labels = _overconfident()
    choice = choose_temperature(logits, labels)
    assert choice.kept and choice.temperature == choice.fitted_temperature > 1.5
    assert choice.validation_nll_after < choice.validation_nll_before
    assert choice.validation_ece_after < choice.validation_ece_before
    assert choice.reason.startswith("T = ")
    # what the manifest records reads back as the same section
    assert Calibration.from_dict(choice.to_dict()) == choice.to_dict()


def test_choose_temperature_serves_t1_when_scaling_hurts_ece() -> None:
    logits, labels = _calibrated_with_outliers()
    choice = choose_temperature(logits, labels)
    # the fit itself lowers NLL; only ECE says no
    assert choice.fitted_temperature > 1.2
    assert choice.validation_nll_after < choice.validation_nll_before
    assert choice.validation_ece_after > choice.validation_ece_before
    assert not choice.kept and choice.temperature == 1.0
    assert choice.reason.startswith("not kept") and "ECE" in choice.reason
    assert "NLL or" not in choice.reason
