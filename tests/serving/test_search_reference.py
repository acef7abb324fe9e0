"""The faster searches against the straightforward ones they replaced, on decoders with a
vocabulary larger than the beam (so the per-row top-k matters) and ends at many steps."""

import numpy as np
import pytest

from serving.decoding import beam_search, greedy_decode
from tests.serving.search_reference import reference_beam_search, reference_greedy_decode

BOS, EOS = 0, 1


class RandomDecoder:
    """A fixed random table of log p(next | prev), nudged by the state (a step count) and the
    memory, so the state must follow each beam through reordering; EOS grows likelier with
    every step, so hypotheses end at many different steps."""

    def __init__(self, vocab: int, source: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(vocab, vocab)) * 2
        logits[:, BOS] = -1e9
        self.table = logits
        self.attention_logits = rng.normal(size=(vocab, source))

    def __call__(self, prev, state, memory, mask):
        logits = self.table[prev] + 0.5 * np.sin(state[:, :1] * 1.7 + memory[:, :1, 0])
        logits[:, EOS] += 0.6 * state[:, 0] - 3  # ends grow likelier, at different steps
        log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        scores = np.where(mask, self.attention_logits[prev], -np.inf)
        attention = np.exp(scores - scores.max(1, keepdims=True))
        attention /= attention.sum(1, keepdims=True)
        return log_probs.astype(np.float32), state + 1, attention.astype(np.float32)


def _problem(vocab, seed, batch=7, source=6):
    rng = np.random.default_rng(seed)
    memory = rng.normal(size=(batch, source, 1)).astype(np.float32)
    mask = np.arange(source)[None, :] < rng.integers(1, source + 1, batch)[:, None]
    return RandomDecoder(vocab, source, seed), np.zeros((batch, 1), np.float32), memory, mask


def _assert_same(got, want, source):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.tokens == w.tokens
        assert g.finished == w.finished
        assert g.score == pytest.approx(w.score, abs=1e-6)
        np.testing.assert_allclose(g.token_log_probs, w.token_log_probs, atol=1e-6)
        np.testing.assert_allclose(g.attention, w.attention, atol=1e-7)
        assert g.attention.shape == (len(g.tokens), source)


@pytest.mark.parametrize(("vocab", "beam", "alpha", "seed"), [
    (40, 4, 0.6, 0), (40, 4, 0.0, 1), (12, 5, 1.0, 2), (3, 4, 0.6, 3), (60, 1, 0.6, 4)])
def test_vectorised_beam_search_agrees_with_the_reference(vocab, beam, alpha, seed):
    decoder, state, memory, mask = _problem(vocab, seed)
    limits = np.array([0, 1, 3, 5, 8, 12, 20])
    got = beam_search(decoder, state, memory, mask, BOS, EOS, limits, beam, alpha)
    want = reference_beam_search(decoder, state, memory, mask, BOS, EOS, limits, beam, alpha)
    _assert_same(got, want, memory.shape[1])


@pytest.mark.parametrize(("vocab", "seed"), [(40, 0), (12, 1), (3, 2)])
def test_greedy_decode_agrees_with_the_reference(vocab, seed):
    decoder, state, memory, mask = _problem(vocab, seed)
    limits = np.array([0, 1, 3, 5, 8, 12, 20])
    got = greedy_decode(decoder, state, memory, mask, BOS, EOS, limits)
    want = reference_greedy_decode(decoder, state, memory, mask, BOS, EOS, limits)
    _assert_same(got, want, memory.shape[1])
    assert any(h.finished for h in got) and not all(h.finished for h in got)
