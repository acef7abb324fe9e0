"""Multi-label metrics in numpy, so the same code scores PyTorch and onnxruntime outputs.

Shapes: scores / probabilities / logits (N, L), targets (N, L) of 0/1, predictions (N, L) bool.

Two kinds of figures:
- decisions (a label is on when its probability >= its threshold): micro / macro precision,
  recall and F1, exact match (every label of the image right) and Hamming loss (share of wrong
  image-label cells);
- rankings (no threshold): precision@k (how many of an image's k highest-scored labels are
  true, over k) and mAP (per label, the average precision of ranking the images by score;
  the mean over the labels that have positives).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

THRESHOLD_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)  # 0.01 .. 0.99: all in (0, 1]
DEFAULT_THRESHOLD = 0.5
TOP_K = (1, 3)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow: exp is only taken of -|z|."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy(probs: np.ndarray, targets: np.ndarray, eps: float = 1e-12) -> float:
    """Mean over examples of the sum over labels of -[t log y + (1 - t) log(1 - y)].

    eps only guards log(0) for probabilities that saturated in float32.
    """
    y = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    t = np.asarray(targets, dtype=np.float64)
    return float(-(t * np.log(y) + (1 - t) * np.log1p(-y)).sum(axis=-1).mean())


def binary_cross_entropy_from_logits(logits: np.ndarray, targets: np.ndarray) -> float:
    """The same from logits: max(z, 0) - z t + log(1 + exp(-|z|)), exact where y saturates."""
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    per_cell = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return float(per_cell.sum(axis=-1).mean())


def decide(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Labels on where the probability reaches the label's threshold (>=, as the server does)."""
    return np.asarray(probs) >= np.asarray(thresholds)


def label_counts(predictions: np.ndarray,
                 targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label (true positives, false positives, false negatives)."""
    p = np.asarray(predictions, dtype=bool)
    t = np.asarray(targets).astype(bool)
    return (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)


def per_label_f1(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """2 tp / (2 tp + fp + fn) per label; NaN where the label is neither present nor predicted
    (F1 is undefined there: nothing to find and nothing claimed)."""
    tp, fp, fn = label_counts(predictions, targets)
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def decision_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Micro (pooled over all cells) and macro (mean over labels) figures, exact match, Hamming."""
    p = np.asarray(predictions, dtype=bool)
    t = np.asarray(targets).astype(bool)
    tp, fp, fn = (int(c.sum()) for c in label_counts(p, t))
    f1 = per_label_f1(p, t)
    return {
        "micro_precision": tp / (tp + fp) if tp + fp else 0.0,
        "micro_recall": tp / (tp + fn) if tp + fn else 0.0,
        "micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "macro_f1": float(np.nanmean(f1)) if np.isfinite(f1).any() else 1.0,
        "exact_match": exact_match(p, t),
        "hamming_loss": hamming_loss(p, t),
    }


def exact_match(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Subset accuracy: the share of images whose whole label set is right."""
    p = np.asarray(predictions, dtype=bool)
    t = np.asarray(targets).astype(bool)
    return float((p == t).all(axis=1).mean())


def hamming_loss(predictions: np.ndarray, targets: np.ndarray) -> float:
    """The share of (image, label) cells decided wrongly."""
    p = np.asarray(predictions, dtype=bool)
    t = np.asarray(targets).astype(bool)
    return float((p != t).mean())


def precision_at_k(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Mean over images of |top-k labels by score that are true| / k.

    Divides by k even when an image has fewer than k true labels (the usual definition), so
    an image with one label scores at most 1/3 at k = 3.
    """
    s = np.asarray(scores)
    k = min(k, s.shape[1])
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(np.asarray(targets).astype(bool), top, axis=1)
    return float(hits.sum(axis=1).mean() / k)


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per label, sum over score levels of (recall gained) x (precision there); NaN for a label
    without positives. Tied scores form one level (as scikit-learn counts them), so a constant
    score earns exactly the label's prevalence."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets).astype(bool)
    ap = np.full(s.shape[1], np.nan)
    for label in range(s.shape[1]):
        positives = t[:, label].sum()
        if positives == 0:
            continue
        order = np.argsort(-s[:, label], kind="stable")
        ranked, hits = s[order, label], t[order, label]
        # the last position of each run of equal scores
        ends = np.append(np.flatnonzero(np.diff(ranked)), len(ranked) - 1)
        tp = np.cumsum(hits)[ends]
        precision = tp / (ends + 1)
        gained = np.diff(np.concatenate([[0], tp])) / positives
        ap[label] = float((gained * precision).sum())
    return ap


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    ap = average_precision(scores, targets)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else math.nan


def tune_thresholds(probs: np.ndarray, targets: np.ndarray,
                    grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per label, the grid threshold with the highest F1 (on VALIDATION data, never test).

    Among equally good thresholds the one nearest 0.5 wins (a flat optimum says nothing about
    which end is better). A label without validation positives keeps 0.5.
    """
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets).astype(bool)
    grid = np.asarray(grid, dtype=np.float64)
    thresholds = np.full(p.shape[1], DEFAULT_THRESHOLD)
    for label in range(p.shape[1]):
        truth = t[:, label]
        if not truth.any():
            continue
        predicted = p[:, label, None] >= grid[None, :]  # (N, G)
        tp = (predicted & truth[:, None]).sum(0)
        fp = (predicted & ~truth[:, None]).sum(0)
        fn = truth.sum() - tp
        f1 = 2 * tp / (2 * tp + fp + fn)
        best = np.flatnonzero(f1 == f1.max())
        thresholds[label] = grid[best[np.argmin(np.abs(grid[best] - DEFAULT_THRESHOLD))]]
    return thresholds


def ranking_metrics(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    out = {"map": mean_average_precision(scores, targets)}
    for k in TOP_K:
        out[f"precision_at_{k}"] = precision_at_k(scores, targets, k)
    return out


def frequency_baseline(train_targets: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Ranking figures of a model that ignores the image: every image is scored with the label
    frequencies of the training set. Its mAP is the mean label prevalence; its precision@k that
    of always answering the k most frequent labels."""
    frequency = np.asarray(train_targets, dtype=np.float64).mean(axis=0)
    return ranking_metrics(np.tile(frequency, (len(targets), 1)), targets)


def multilabel_report(probs: np.ndarray, logits: np.ndarray, targets: np.ndarray,
                      thresholds: np.ndarray, labels: list[str],
                      train_targets: np.ndarray) -> dict[str, Any]:
    """Everything the manifest records for one held-out split, JSON-ready (NaN -> None).

    Top-level decision figures use the tuned thresholds (what the server applies); the same
    at the global 0.5 are under "at_threshold_0.5".
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    tuned = decide(probs, thresholds)
    plain = decide(probs, DEFAULT_THRESHOLD)
    ap = average_precision(probs, targets)
    f1_tuned, f1_plain = per_label_f1(tuned, targets), per_label_f1(plain, targets)
    positives = np.asarray(targets).astype(bool).sum(0)
    report: dict[str, Any] = {
        "n": int(len(targets)),
        **decision_metrics(tuned, targets),
        **ranking_metrics(probs, targets),
        "bce": binary_cross_entropy_from_logits(logits, targets),
        "at_threshold_0.5": decision_metrics(plain, targets),
        "baseline_label_frequency": frequency_baseline(train_targets, targets),
        "labels_with_positives": int((positives > 0).sum()),
        "per_label": {
            label: {"positives": int(positives[i]), "threshold": float(thresholds[i]),
                    "ap": ap[i], "f1": f1_tuned[i], "f1_at_0.5": f1_plain[i]}
            for i, label in enumerate(labels)},
    }
    return _json_ready(report)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; "undefined" reads better than a fake number
    return value


def format_report(report: dict[str, Any]) -> str:
    """The per-label table printed at the end of training."""
    rows = report["per_label"]
    width = max(8, *(len(label) for label in rows)) + 1

    def num(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.3f}"

    lines = ["label".ljust(width) + "  test+  thresh     AP     F1  F1@0.5"]
    for label, r in rows.items():
        lines.append(f"{label[:width - 1].ljust(width)} {r['positives']:6d}  "
                     f"{r['threshold']:5.2f}  {num(r['ap'])} {num(r['f1'])} "
                     f"{num(r['f1_at_0.5'])}")
    return "\n".join(lines)
