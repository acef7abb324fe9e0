"""Greedy and beam search against brute force on a small deterministic decoder."""

import itertools

import numpy as np
import pytest

from serving.decoding import beam_search, greedy_decode
from serving.decoding.encoder_decoder import Encoded
from serving.decoding.greedy import GreedySearch
from serving.decoding.search import length_penalty

BOS, EOS, VOCAB, SOURCE = 0, 1, 5, 4


class MarkovDecoder:
    """log p(next | prev, source) from fixed random tables; attention depends on prev."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(VOCAB, VOCAB)) * 2
        logits[:, BOS] = -1e9  # BOS is never generated
        self.table = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        self.attention_logits = rng.normal(size=(VOCAB, SOURCE))

    def __call__(self, prev, state, memory, mask):
        # the state counts steps so that it has to travel correctly through beam reordering
        bias = memory[:, 0, 0][:, None] * 0.3 * np.sin(state[:, :1] + np.arange(VOCAB))
        log_probs = self.table[prev] + bias
        log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
        scores = np.where(mask, self.attention_logits[prev, :mask.shape[1]], -np.inf)
        attention = np.exp(scores - scores.max(1, keepdims=True))
        attention /= attention.sum(1, keepdims=True)
        return log_probs.astype(np.float32), state + 1, attention.astype(np.float32)

    def sequence_log_prob(self, tokens, memory_value, ended):
        prev, state, total = BOS, 0.0, 0.0
        for token in [*tokens, EOS] if ended else tokens:
            lp, _, _ = self(np.array([prev]), np.array([[state]]),
                            np.full((1, SOURCE, 1), memory_value), np.ones((1, SOURCE), bool))
            total += lp[0, token]
            prev, state = token, state + 1
        return total


def inputs(batch, lengths=None):
    rng = np.random.default_rng(1)
    memory = rng.normal(size=(batch, SOURCE, 1)).astype(np.float32)
    mask = np.ones((batch, SOURCE), bool)
    for b, n in enumerate(lengths or []):
        mask[b, n:] = False
    return np.zeros((batch, 1), np.float32), memory, mask


def brute_force(decoder, memory_value, max_length, alpha):
    best = (-np.inf, None)
    words = [w for w in range(VOCAB) if w not in (BOS, EOS)]
    for n in range(max_length + 1):
        for tokens in itertools.product(words, repeat=n):
            for ended in ([True, False] if n == max_length else [True]):
                lp = decoder.sequence_log_prob(list(tokens), memory_value, ended)
                score = lp / length_penalty(n + int(ended), alpha)
                best = max(best, (score, list(tokens)), key=lambda x: x[0])
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_wide_beam_finds_the_exact_optimum(alpha):
    decoder = MarkovDecoder()
    state, memory, mask = inputs(3)
    found = beam_search(decoder, state, memory, mask, BOS, EOS, np.array([3, 3, 3]),
                        beam_size=64, length_penalty_alpha=alpha)
    for b, hyp in enumerate(found):
        score, tokens = brute_force(decoder, memory[b, 0, 0], 3, alpha)
        assert hyp.tokens == tokens
        assert hyp.score == pytest.approx(score, abs=1e-4)


def test_beam_of_one_is_greedy():
    decoder = MarkovDecoder(2)
    state, memory, mask = inputs(6, lengths=[4, 2, 3, 1, 4, 2])
    lengths = np.array([8, 3, 5, 0, 10, 6])
    greedy = greedy_decode(decoder, state, memory, mask, BOS, EOS, lengths)
    beam = beam_search(decoder, state, memory, mask, BOS, EOS, lengths, beam_size=1)
    for g, b in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens and g.finished == b.finished
        np.testing.assert_allclose(g.attention, b.attention)
        np.testing.assert_allclose(g.token_log_probs, b.token_log_probs, atol=1e-6)
    assert greedy[3].tokens == [] and all(len(g.tokens) <= n for g, n in zip(greedy, lengths,
                                                                             strict=True))


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_attention_rows_are_the_ones_that_produced_each_token(search):
    decoder = MarkovDecoder(3)
    state, memory, mask = inputs(4, lengths=[4, 1, 2, 3])
    lengths = np.array([6, 6, 6, 6])
    if search == "greedy":
        hyps = greedy_decode(decoder, state, memory, mask, BOS, EOS, lengths)
    else:
        hyps = beam_search(decoder, state, memory, mask, BOS, EOS, lengths, beam_size=3,
                           length_penalty_alpha=0.6)
    for b, hyp in enumerate(hyps):
        prev, st = BOS, state[b:b + 1]
        assert hyp.attention.shape == (len(hyp.tokens), SOURCE)
        for i, token in enumerate(hyp.tokens):
            lp, st, att = decoder(np.array([prev]), st, memory[b:b + 1], mask[b:b + 1])
            np.testing.assert_allclose(hyp.attention[i], att[0], atol=1e-7)
            assert hyp.token_log_probs[i] == pytest.approx(lp[0, token], abs=1e-6)
            prev = token
        np.testing.assert_allclose(hyp.attention.sum(1), 1, atol=1e-6)
        assert (hyp.attention[:, mask[b].sum():] == 0).all()  # padding gets nothing


def test_a_sentence_decodes_the_same_alone_or_in_a_batch():
    decoder = MarkovDecoder(4)
    state, memory, mask = inputs(5, lengths=[4, 2, 3, 1, 4])
    lengths = np.array([7, 2, 5, 4, 9])
    together = beam_search(decoder, state, memory, mask, BOS, EOS, lengths, beam_size=4,
                           length_penalty_alpha=0.6)
    for b in range(5):
        alone = beam_search(decoder, state[b:b + 1], memory[b:b + 1], mask[b:b + 1], BOS, EOS,
                            lengths[b:b + 1], beam_size=4, length_penalty_alpha=0.6)[0]
        assert alone.tokens == together[b].tokens
        assert alone.score == pytest.approx(together[b].score, abs=1e-6)


def _hypothesis_fields(hypotheses):
    return [(h.tokens, h.token_log_probs, h.attention.tolist(), h.score, h.finished)
            for h in hypotheses]


def test_greedy_searches_sharing_one_batch_of_rows_end_as_each_alone():
    """A step scheduler's greedy calls share one batch of rows, joining it between steps and
    leaving it as their sentences end (at different steps; one at once: a length limit of
    0); each must end exactly as it does stepped alone, though its rows move in the batch
    and its memory is padded to the widest source."""
    decoder = MarkovDecoder(2)
    calls = []
    for i, limits in enumerate([np.array([3, 6]), np.array([0, 5, 1]), np.array([8]),
                                np.array([2, 7, 4, 1])]):
        width = 4 - i  # sources of different widths share the batch through padding
        state, memory, mask = inputs(len(limits), lengths=[width] * len(limits))
        calls.append((state, memory[:, :width] + i, mask[:, :width], limits))
    alone = [_hypothesis_fields(greedy_decode(decoder, state, memory, mask, BOS, EOS, limits))
             for state, memory, mask, limits in calls]
    together = [GreedySearch(state, memory, mask, BOS, EOS, limits)
                for state, memory, mask, limits in calls]
    shared: dict = {}
    rows = together[0].stepper(shared)
    steps = 0
    while not all(s.done for s in together):
        if steps == 2:  # later calls join a batch whose rows have begun and ended
            assert all(s.stepper(shared) is rows for s in together[1:])
        rows.advance(*decoder(*rows.inputs()))
        steps += 1
    assert [_hypothesis_fields(s.hypotheses()) for s in together] == alone
    assert not len(rows)


def test_a_greedy_search_that_leaves_takes_only_its_rows():
    decoder = MarkovDecoder(5)
    calls = [inputs(2, lengths=[4, 3]), inputs(3, lengths=[2, 4, 1])]
    limits = [np.array([9, 9]), np.array([9, 9, 9])]
    alone = _hypothesis_fields(greedy_decode(decoder, *calls[1], BOS, EOS, limits[1]))
    searches = [GreedySearch(*c, BOS, EOS, n) for c, n in zip(calls, limits, strict=True)]
    shared: dict = {}
    rows = [s.stepper(shared) for s in searches][0]
    rows.advance(*decoder(*rows.inputs()))
    searches[0].leave()
    while not searches[1].done:
        rows.advance(*decoder(*rows.inputs()))
    assert _hypothesis_fields(searches[1].hypotheses()) == alone and not len(rows)


def test_calls_encoded_together_split_back_to_their_own_widths():
    memory = np.arange(5 * 6 * 2, dtype=np.float32).reshape(5, 6, 2)
    mask = np.zeros((5, 6), bool)
    for row, n in enumerate([2, 6, 3, 1, 1]):
        mask[row, :n] = True
    parts = Encoded(memory, np.arange(5.0)[:, None], mask).split([1, 2, 2])
    assert [p.memory.shape for p in parts] == [(1, 2, 2), (2, 6, 2), (2, 1, 2)]
    assert [p.state[:, 0].tolist() for p in parts] == [[0.0], [1.0, 2.0], [3.0, 4.0]]
    np.testing.assert_array_equal(parts[1].memory, memory[1:3])
    assert parts[2].mask.all()


def test_a_greedy_search_that_leaves_before_its_first_step_takes_no_rows():
    """Searches that join between two steps are added to the batch together at the next
    step; one that leaves before then must take nothing, and the others end as alone."""
    decoder = MarkovDecoder(3)
    calls = [inputs(2, lengths=[4, 3]), inputs(1, lengths=[2]), inputs(2, lengths=[1, 4])]
    limits = [np.array([6, 4]), np.array([5]), np.array([3, 7])]
    alone = [_hypothesis_fields(greedy_decode(decoder, *c, BOS, EOS, n))
             for c, n in zip(calls, limits, strict=True)]
    searches = [GreedySearch(*c, BOS, EOS, n) for c, n in zip(calls, limits, strict=True)]
    shared: dict = {}
    rows = [s.stepper(shared) for s in searches][0]
    assert len(rows) == 5
    searches[1].leave()
    assert len(rows) == 4
    while not (searches[0].done and searches[2].done):
        rows.advance(*decoder(*rows.inputs()))
    assert [_hypothesis_fields(searches[i].hypotheses()) for i in (0, 2)] == [alone[0], alone[2]]
    assert not len(rows) and not searches[1].done
