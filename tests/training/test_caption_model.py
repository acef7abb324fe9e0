"""Attention, the doubly stochastic penalty, and the caption metrics on hand examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.caption_metrics import attention_localisation, corpus_bleu, exact_match
from training.models.attention import AdditiveAttention
from training.models.captioner import Captioner, doubly_stochastic_penalty


def test_attention_rows_sum_to_one_and_masked_cells_get_zero():
    torch.manual_seed(0)
    # the captioner's attention: additive, with a bias on the query side
    att = AdditiveAttention(query_dim=5, memory_dim=6, attention_dim=4, query_bias=True)
    memory, query = torch.randn(3, 7, 6), torch.randn(3, 5)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    context, weights = att(query, memory, mask)
    assert weights.shape == (3, 7) and context.shape == (3, 6)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    assert torch.all(weights[1, 4:] == 0)
    torch.testing.assert_close(context[1], weights[1, :4] @ memory[1, :4])


def test_captioner_step_and_teacher_forcing_agree():
    torch.manual_seed(0)
    model = Captioner(1, (32, 32), vocab_size=9, channels=[4, 8], feature_dim=8, hidden=16,
                      attention_dim=8, dropout=0.0).eval()
    assert model.grid == (8, 8)
    x, tokens = torch.randn(2, 1, 32, 32), torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    logits, attention = model(x, tokens)
    assert logits.shape == (2, 3, 9) and attention.shape == (2, 3, 64)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 3))
    memory, state = model.encode(x)
    mask = torch.ones(2, 64, dtype=torch.bool)
    first, _, att0 = model.step(tokens[:, 0], state, memory, mask)
    torch.testing.assert_close(first, logits[:, 0])
    torch.testing.assert_close(att0, attention[:, 0])


def test_doubly_stochastic_penalty_on_a_hand_example():
    # 1 image, 3 cells, 3 steps of which the last is padding
    attention = torch.tensor([[[0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    # totals per cell 0.7, 0.7, 0.6 -> 0.3^2 + 0.3^2 + 0.4^2 = 0.34
    assert doubly_stochastic_penalty(attention, valid).item() == pytest.approx(0.34)
    # a batch averages over images
    both = torch.cat([attention, torch.tensor([[[1 / 3] * 3] * 3])])
    assert doubly_stochastic_penalty(both, torch.tensor([[True, True, False],
                                                         [True, True, True]])).item() == \
        pytest.approx(0.17)


def test_bleu_on_a_hand_example():
    hyp = [["the", "cat", "sat", "on", "the", "mat"]]
    refs = [[["the", "cat", "sat", "on", "a", "mat"], ["a", "cat", "on", "the", "mat"]]]
    b = corpus_bleu(hyp, refs)
    # unigrams: "the" twice but at most once in any reference -> clipped to 1; 5/6
    # bigrams: the cat, cat sat, sat on, on the, the mat -> all in some ref: 5/5
    # trigrams: the cat sat, cat sat on, on the mat -> 3/4; 4-grams: the cat sat on -> 1/3
    p = [5 / 6, 5 / 5, 3 / 4, 1 / 3]
    assert b["brevity_penalty"] == 1.0
    assert b["bleu1"] == pytest.approx(p[0])
    assert b["bleu4"] == pytest.approx(math.exp(sum(math.log(x) for x in p) / 4))
    assert corpus_bleu(refs[0][:1], [refs[0]])["bleu4"] == pytest.approx(1.0)


def test_bleu_brevity_penalty_uses_the_closest_reference():
    b = corpus_bleu([["a", "b"]], [[["a", "b", "c", "d"], ["a", "b", "c"]]])
    assert b["brevity_penalty"] == pytest.approx(math.exp(1 - 3 / 2))


def test_exact_match_against_any_reference():
    assert exact_match([["a"], ["b", "c"]], [[["x"], ["a"]], [["b"]]]) == 0.5


def test_attention_localisation_with_one_cell_of_slack():
    # 32x32 image, 4x4 grid of 8-pixel cells; digits: "one" at cells col 0, "two" at col 3
    boxes = [np.array([[0, 0, 8, 8], [24, 24, 32, 32]])]
    truth = [["one", "two"]]

    def row(cell: int) -> np.ndarray:
        a = np.full(16, 0.01)
        a[cell] = 1.0
        return a / a.sum()

    # "one" peaks at (row 1, col 1): within one cell of its box -> hit;
    # "two" peaks at (row 0, col 0): far from its box -> miss
    r = attention_localisation([["one", "two"]], [np.stack([row(5), row(0)])], truth, boxes,
                               (32, 32), (4, 4))
    assert r["attention_localisation"] == 0.5 and r["localisation_words"] == 2
    # without slack (row 1, col 1) misses too; a word naming no digit counts as a miss
    r = attention_localisation([["one", "six"]], [np.stack([row(5), row(15)])], truth, boxes,
                               (32, 32), (4, 4), slack=0)
    assert r["attention_localisation"] == 0.0
