"""Multi-label metrics on cases small enough to count by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.multilabel_metrics import (
    average_precision,
    decide,
    decision_metrics,
    exact_match,
    format_report,
    frequency_baseline,
    hamming_loss,
    mean_average_precision,
    multilabel_report,
    per_label_f1,
    precision_at_k,
    tune_thresholds,
)

SCORES = np.array([[0.9, 0.8, 0.1, 0.3],
                   [0.2, 0.1, 0.7, 0.6],
                   [0.6, 0.4, 0.3, 0.2]])
TARGETS = np.array([[1, 0, 0, 1],
                    [0, 0, 1, 1],
                    [0, 1, 0, 0]])


def test_precision_at_k() -> None:
    # top-1: label 0 (true), label 2 (true), label 0 (false)
    assert precision_at_k(SCORES, TARGETS, 1) == pytest.approx(2 / 3)
    # top-3: {0, 1, 3} has 2 true; {2, 3, 0} has 2; {0, 1, 2} has 1 -> (2 + 2 + 1) / 3 / 3
    assert precision_at_k(SCORES, TARGETS, 3) == pytest.approx(5 / 9)
    # k beyond the label count is clipped to every label: true labels / label count
    assert precision_at_k(SCORES, TARGETS, 10) == pytest.approx(5 / 12)


def test_micro_and_macro_f1_exact_match_and_hamming() -> None:
    predictions = decide(SCORES, 0.5)
    # predicted: row0 {0, 1}, row1 {2, 3}, row2 {0}; true: {0, 3}, {2, 3}, {1}
    # per label (tp, fp, fn): 0 (1, 1, 0), 1 (0, 1, 1), 2 (1, 0, 0), 3 (1, 0, 1)
    np.testing.assert_allclose(per_label_f1(predictions, TARGETS),
                               [2 / 3, 0.0, 1.0, 2 / 3])
    m = decision_metrics(predictions, TARGETS)
    assert m["micro_precision"] == pytest.approx(3 / 5)
    assert m["micro_recall"] == pytest.approx(3 / 5)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 2))
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0 + 1 + 2 / 3) / 4)
    assert m["exact_match"] == pytest.approx(1 / 3)  # only row 1 is entirely right
    assert m["hamming_loss"] == pytest.approx(4 / 12)  # 4 wrong cells of 12
    assert exact_match(TARGETS, TARGETS) == 1.0 and hamming_loss(TARGETS, TARGETS) == 0.0


def test_macro_f1_skips_labels_neither_present_nor_predicted() -> None:
    targets = np.array([[1, 0], [0, 0]])
    predictions = np.array([[True, False], [False, False]])
    f1 = per_label_f1(predictions, targets)
    assert f1[0] == 1.0 and math.isnan(f1[1])
    assert decision_metrics(predictions, targets)["macro_f1"] == 1.0


def test_average_precision_by_hand() -> None:
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    targets = np.array([[1], [0], [1], [0]])
    # positives at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision(scores, targets)[0] == pytest.approx((1 + 2 / 3) / 2)
    # a perfect ranking scores 1; positives ranked last (3 and 4) score (1/3 + 2/4) / 2
    assert average_precision(scores, np.array([[1], [1], [0], [0]]))[0] == pytest.approx(1.0)
    assert average_precision(scores, np.array([[0], [0], [1], [1]]))[0] == pytest.approx(
        (1 / 3 + 2 / 4) / 2)


def test_ties_count_as_one_level_and_labels_without_positives_are_skipped() -> None:
    constant = np.full((5, 2), 0.3)
    targets = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [0, 0]])
    ap = average_precision(constant, targets)
    assert ap[0] == pytest.approx(2 / 5) and math.isnan(ap[1])  # prevalence; undefined
    assert mean_average_precision(constant, targets) == pytest.approx(2 / 5)


def test_frequency_baseline() -> None:
    train = np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]])  # frequencies .75 .25 .25
    base = frequency_baseline(train, TARGETS[:, :3])
    # constant scores per label: AP = test prevalence (1/3 for each of the three labels)
    assert base["map"] == pytest.approx(1 / 3)
    # every image answers label 0 first: true in row 0 only
    assert base["precision_at_1"] == pytest.approx(1 / 3)


def test_threshold_tuning_maximises_f1_on_the_given_split() -> None:
    probs = np.array([[0.10, 0.9, 0.3],
                      [0.35, 0.2, 0.3],
                      [0.40, 0.8, 0.3],
                      [0.80, 0.7, 0.3]])
    targets = np.array([[0, 1, 0],
                        [1, 0, 0],
                        [1, 1, 0],
                        [1, 0, 0]])
    t = tune_thresholds(probs, targets)
    # label 0: any threshold in (0.10, 0.35] separates perfectly; the one nearest 0.5 is 0.35
    assert t[0] == pytest.approx(0.35)
    # label 1: 0.8 and 0.9 are positive, 0.7 is not: (0.7, 0.8]; nearest 0.5 is 0.71
    assert t[1] == pytest.approx(0.71)
    assert t[2] == 0.5  # no positives: keeps the default
    assert ((t > 0) & (t <= 1)).all()
    tuned = decision_metrics(decide(probs, t), targets)["micro_f1"]
    plain = decision_metrics(decide(probs, 0.5), targets)["micro_f1"]
    assert tuned == 1.0 and plain < 1.0


def test_report_is_json_ready_and_printable() -> None:
    import json

    logits = np.log(SCORES / (1 - SCORES))
    report = multilabel_report(SCORES, logits, TARGETS, np.full(4, 0.5), list("abcd"),
                               train_targets=TARGETS)
    text = json.dumps(report, allow_nan=False)  # NaN would not be valid JSON
    assert '"at_threshold_0.5"' in text
    assert report["micro_f1"] == report["at_threshold_0.5"]["micro_f1"]
    assert report["per_label"]["b"]["positives"] == 1
    table = format_report(report)
    assert table.splitlines()[0].startswith("label") and len(table.splitlines()) == 5
