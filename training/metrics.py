"""Classification metrics in numpy, so the same code scores PyTorch and onnxruntime outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(z_i) / sum_j exp(z_j), computed after subtracting the max so exp never overflows."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """z_i - logsumexp(z): exact even where softmax underflows to 0."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def cross_entropy_from_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean of -log softmax(z)_t: the NLL of the true classes."""
    lp = log_softmax(logits)
    return float(-lp[np.arange(len(labels)), labels].mean())


def cross_entropy(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean of -sum_j t_j log y_j with one-hot t, i.e. -log y_true (natural log).

    eps only guards log(0) for probabilities that underflowed in float32.
    """
    p = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(p, eps)).mean())


def accuracy(probs_or_logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.argmax(probs_or_logits, axis=-1) == labels).mean())


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (labels, predictions), 1)
    return m


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error (Guo et al. 2017) with equal-width confidence bins.

    Confidence is the top probability; bin b holds confidences in (b/n, (b+1)/n]. ECE is the
    average over bins of |accuracy - mean confidence| weighted by the bin's share of samples.
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
    # ceil(conf * n) - 1 puts a confidence exactly on an edge into the lower bin
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(total)


def classification_metrics(probs: np.ndarray, logits: np.ndarray, labels: np.ndarray,
                           num_classes: int, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """What a practitioner expects at export: accuracy and cross-entropy (they can disagree),
    calibration before (softmax of raw logits) and after temperature scaling, confusions."""
    return {
        "accuracy": accuracy(probs, labels),
        "cross_entropy": cross_entropy(probs, labels),
        "cross_entropy_uncalibrated": cross_entropy_from_logits(logits, labels),
        "ece_before": ece(softmax(logits), labels, n_bins),
        "ece_after": ece(probs, labels, n_bins),
        "ece_bins": n_bins,
        "confusion_matrix": confusion_matrix(labels, probs.argmax(axis=-1),
                                             num_classes).tolist(),
        "n": int(len(labels)),
    }


def format_confusion_matrix(matrix: list[list[int]] | np.ndarray,
                            names: list[str] | None = None) -> str:
    m = np.asarray(matrix)
    names = names or [str(i) for i in range(len(m))]
    width = max(max(len(n) for n in names), len(str(int(m.max()) if m.size else 0))) + 1
    head = "true\\pred".ljust(10) + "".join(n.rjust(width) for n in names)
    rows = [names[i][:9].ljust(10) + "".join(str(int(v)).rjust(width) for v in row)
            for i, row in enumerate(m)]
    return "\n".join([head, *rows])
