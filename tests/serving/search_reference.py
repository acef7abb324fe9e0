"""The searches serving had before they were made faster, kept as references the faster ones
must agree with. Greedy: every output scattered into place at every step and the memory
copied at every step. Beam: every beam's whole history copied at every step, a global top-k
over k * vocabulary per sentence, the stopping rule checked sentence by sentence."""

from __future__ import annotations

import numpy as np

from serving.decoding import Hypothesis, StepFn
from serving.decoding.search import length_penalty


def reference_greedy_decode(step: StepFn, state: np.ndarray, memory: np.ndarray, mask: np.ndarray,
                  bos_id: int, eos_id: int, max_lengths: np.ndarray) -> list[Hypothesis]:
    batch, source_len = mask.shape
    max_lengths = np.asarray(max_lengths, dtype=np.int64)
    horizon = int(max_lengths.max(initial=0))
    tokens = np.zeros((batch, horizon), np.int64)
    log_probs = np.zeros((batch, horizon), np.float32)
    attention = np.zeros((batch, horizon, source_len), np.float32)
    lengths = np.zeros(batch, np.int64)
    total = np.zeros(batch, np.float64)
    finished = np.zeros(batch, bool)
    alive = np.flatnonzero(max_lengths > 0)
    prev = np.full(len(alive), bos_id, np.int64)
    state, memory, mask = state[alive], memory[alive], mask[alive]
    while len(alive):
        step_log_probs, state, step_attention = step(prev, state, memory, mask)
        best = step_log_probs.argmax(axis=1)
        best_lp = step_log_probs[np.arange(len(alive)), best]
        total[alive] += best_lp
        is_eos = best == eos_id
        emit, at = alive[~is_eos], lengths[alive[~is_eos]]
        tokens[emit, at] = best[~is_eos]
        log_probs[emit, at] = best_lp[~is_eos]
        attention[emit, at] = step_attention[~is_eos]
        lengths[emit] += 1
        finished[alive[is_eos]] = True
        keep = ~is_eos & (lengths[alive] < max_lengths[alive])
        alive, prev = alive[keep], best[keep]
        state, memory, mask = state[keep], memory[keep], mask[keep]
    return [Hypothesis(tokens[b, :n].tolist(), log_probs[b, :n].tolist(),
                       attention[b, :n].copy(), float(total[b]), bool(finished[b]))
            for b, n in enumerate(lengths)]


def reference_beam_search(step: StepFn, state: np.ndarray, memory: np.ndarray, mask: np.ndarray,
                bos_id: int, eos_id: int, max_lengths: np.ndarray, beam_size: int,
                length_penalty_alpha: float = 0.0) -> list[Hypothesis]:
    """The best hypothesis per sentence, ranked by log-probability / length_penalty."""
    batch, source_len = mask.shape
    k = beam_size
    max_lengths = np.asarray(max_lengths, dtype=np.int64)
    results: list[Hypothesis | None] = [None] * batch
    candidates: list[list[Hypothesis]] = [[] for _ in range(batch)]
    sentences = np.flatnonzero(max_lengths > 0)  # sentences still searching
    for b in np.flatnonzero(max_lengths <= 0):
        results[b] = Hypothesis([], [], np.zeros((0, source_len), np.float32), 0.0, False)
    rows = np.repeat(sentences, k)
    state, memory, mask = state[rows], memory[rows], mask[rows]
    scores = np.tile(np.r_[0.0, np.full(k - 1, -np.inf)], len(sentences))  # one live beam
    prev = np.full(len(rows), bos_id, np.int64)
    hist_tokens = np.zeros((len(rows), 0), np.int64)
    hist_lp = np.zeros((len(rows), 0), np.float32)
    hist_att = np.zeros((len(rows), 0, source_len), np.float32)
    t = 0
    while len(sentences):
        step_log_probs, state, step_attention = step(prev, state, memory, mask)
        n, vocab = len(sentences), step_log_probs.shape[1]
        total = (scores[:, None] + step_log_probs).reshape(n, k * vocab)
        top = np.argpartition(-total, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(total, top, 1), 1), 1)
        origin = (np.arange(n)[:, None] * k + top // vocab).ravel()
        token = (top % vocab).ravel()
        scores = total[np.arange(n)[:, None], top].ravel()
        token_lp = step_log_probs[origin, token].astype(np.float32)
        hist_tokens, hist_lp = hist_tokens[origin], hist_lp[origin]
        hist_att = hist_att[origin]
        state = state[origin]
        t += 1
        ended = (token == eos_id) & np.isfinite(scores)
        for row in np.flatnonzero(ended):  # a few per step: finished hypotheses leave the beam
            s = row // k
            candidates[sentences[s]].append(_hypothesis(
                hist_tokens[row], hist_lp[row], hist_att[row], scores[row], True,
                length_penalty_alpha))
        scores = np.where(ended, -np.inf, scores)
        hist_tokens = np.concatenate([hist_tokens, token[:, None]], axis=1)
        hist_lp = np.concatenate([hist_lp, token_lp[:, None]], axis=1)
        hist_att = np.concatenate([hist_att, step_attention[origin][:, None]], axis=1)
        done = np.zeros(n, bool)
        for s, b in enumerate(sentences):
            live = scores[s * k:(s + 1) * k]
            if t >= max_lengths[b] or not np.isfinite(live).any():
                for row in range(s * k, (s + 1) * k):
                    if np.isfinite(scores[row]):
                        candidates[b].append(_hypothesis(
                            hist_tokens[row], hist_lp[row], hist_att[row], scores[row], False,
                            length_penalty_alpha))
                done[s] = True
            elif len(candidates[b]) >= k and _cannot_improve(
                    candidates[b], live, int(max_lengths[b]), length_penalty_alpha):
                done[s] = True
            if done[s]:
                results[b] = max(candidates[b], key=lambda h: h.score, default=Hypothesis(
                    [], [], np.zeros((0, source_len), np.float32), -np.inf, False))
        keep_rows = np.repeat(~done, k)
        sentences = sentences[~done]
        scores, prev = scores[keep_rows], token[keep_rows]
        state, memory, mask = state[keep_rows], memory[keep_rows], mask[keep_rows]
        hist_tokens, hist_lp, hist_att = hist_tokens[keep_rows], hist_lp[keep_rows], \
            hist_att[keep_rows]
    return [r for r in results if r is not None]


def _hypothesis(tokens: np.ndarray, lps: np.ndarray, att: np.ndarray, score: float,
                finished: bool, alpha: float) -> Hypothesis:
    length = len(tokens) + int(finished)  # EOS counts as an output position
    return Hypothesis(tokens.tolist(), lps.tolist(), att.copy(),
                      float(score / length_penalty(length, alpha)), finished)


def _cannot_improve(found: list[Hypothesis], live: np.ndarray, max_length: int,
                    alpha: float) -> bool:
    """Log-probabilities only fall, so a live beam's raw score is an upper bound of its future;
    a length penalty divides a negative score least at the longest length it could reach."""
    best_live = float(live.max())
    bound = best_live / length_penalty(max_length + 1, alpha) if best_live < 0 else best_live
    return max(h.score for h in found) >= bound
