"""Searches over a decoder step, batched over sentences (and beams as rows): the interface the
decode loops drive, and beam search (greedy search: serving.decoding.greedy).

A step maps (previous ids [R], state [R, D], memory [R, S, M], source mask [R, S]) to
(log-probabilities [R, V], new state [R, D], attention [R, S]); R counts rows, which are
sentences for greedy search and sentence x beam for beam search. Rows whose sentence has ended
are dropped from later steps, so a short sentence in a batch of long ones costs nothing once
it is done. Every hypothesis carries the attention row of each token it emitted through beam
reordering, so what is served is the attention that produced each word.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from serving.execution import stop_if_abandoned

StepFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                  tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without BOS and EOS
    token_log_probs: list[float]  # one per token
    attention: np.ndarray  # [len(tokens), source_len]: the attention that produced each token
    score: float  # log-probability of the whole output (EOS included), length-normalised
    finished: bool  # False when the maximum length cut it short


def length_penalty(length: np.ndarray | int, alpha: float) -> np.ndarray | float:
    """GNMT's ((5 + n) / 6) ** alpha; alpha 0 means raw log-probabilities."""
    return ((5.0 + length) / 6.0) ** alpha


_rows_versions = itertools.count(1)


def new_rows_version() -> int:
    """A number no rows have had before, in any search: a scheduler keys what it built from
    several searches' rows on their versions."""
    return next(_rows_versions)


class Stepper(Protocol):
    """Rows stepped together in a step batch: one search's, or a batch of several searches'."""

    rows_version: int

    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...

    def advance(self, log_probs: np.ndarray, state: np.ndarray,
                attention: np.ndarray) -> None: ...

    def take_ended(self) -> list[Search]:
        """The searches among its rows' that ended since it was last asked: a scheduler
        releases them without looking at every search it runs after every step."""


class Search:
    """One decode in progress, driven one decoder step at a time by whoever owns the step
    function: a plain loop (run_search), or a scheduler that runs the rows of many searches
    in one step batch and admits and releases searches between steps."""

    done: bool
    # new whenever the rows' memory and mask are replaced (rows dropped), so a scheduler
    # can keep its padded concatenation of them until then
    rows_version: int = 0

    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(previous ids [R], state [R, D], memory [R, S, M], mask [R, S]) of the next step."""
        raise NotImplementedError

    def advance(self, log_probs: np.ndarray, state: np.ndarray, attention: np.ndarray) -> None:
        """Take one step's outputs for this search's rows."""
        raise NotImplementedError

    def hypotheses(self) -> list[Hypothesis]:
        """One per sentence, in order, once done."""
        raise NotImplementedError

    def stepper(self, shared: dict[Hashable, Any]) -> Stepper:
        """What steps this search's rows in a scheduler's step batch: the search itself,
        unless searches of its kind share one batch of rows (kept in `shared`, the
        scheduler's, by kind)."""
        return self

    def leave(self) -> None:
        """Its rows leave the step batch unfinished (nobody waits for them any more)."""

    def take_ended(self) -> list[Search]:
        """Stepping its own rows: itself once it is done (Stepper.take_ended)."""
        return [self] if self.done else []


def run_search(search: Search, step: StepFn) -> list[Hypothesis]:
    while not search.done:
        stop_if_abandoned()
        search.advance(*step(*search.inputs()))
    return search.hypotheses()


def beam_search(step: StepFn, state: np.ndarray, memory: np.ndarray, mask: np.ndarray,
                bos_id: int, eos_id: int, max_lengths: np.ndarray, beam_size: int,
                length_penalty_alpha: float = 0.0) -> list[Hypothesis]:
    """The best hypothesis per sentence, ranked by log-probability / length_penalty."""
    return run_search(BeamSearch(state, memory, mask, bos_id, eos_id, max_lengths, beam_size,
                                 length_penalty_alpha), step)


class BeamSearch(Search):
    """The best hypothesis per sentence, ranked by log-probability / length_penalty.

    Per step, all sentences at once: each row's k best tokens (a row's share of its sentence's
    k best extensions can only come from its own k best), then the k best of those k * k per
    sentence. History is kept as per-step back-pointers and read back only for hypotheses
    that end, rather than copying every beam's whole history at every step.
    """

    def __init__(self, state: np.ndarray, memory: np.ndarray, mask: np.ndarray, bos_id: int,
                 eos_id: int, max_lengths: np.ndarray, beam_size: int,
                 length_penalty_alpha: float = 0.0) -> None:
        batch, self.source_len = mask.shape
        self.rows_version = new_rows_version()
        k = self.k = beam_size
        self.eos_id, self.alpha = eos_id, length_penalty_alpha
        self.max_lengths = max_lengths = np.asarray(max_lengths, dtype=np.int64)
        self.results: list[Hypothesis | None] = [None] * batch
        self.candidates: list[list[Hypothesis]] = [[] for _ in range(batch)]
        self.sentences = np.flatnonzero(max_lengths > 0)  # sentences still searching
        for b in np.flatnonzero(max_lengths <= 0):
            self.results[b] = Hypothesis([], [], np.zeros((0, self.source_len), np.float32),
                                         0.0, False)
        rows = np.repeat(self.sentences, k)
        self.state, self.memory, self.mask = state[rows], memory[rows], mask[rows]
        # one live beam per sentence to start with
        self.scores = np.tile(np.r_[0.0, np.full(k - 1, -np.inf)], len(self.sentences))
        self.prev = np.full(len(rows), bos_id, np.int64)
        # per sentence: how many hypotheses ended, and the best of their (normalised) scores
        self.found = np.zeros(batch, np.int64)
        self.best_found = np.full(batch, -np.inf)
        self.history = _History()
        self.t = 0

    @property
    def done(self) -> bool:  # type: ignore[override]
        return not len(self.sentences)

    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.prev, self.state, self.memory, self.mask

    def advance(self, log_probs: np.ndarray, state: np.ndarray, attention: np.ndarray) -> None:
        k, sentences, history = self.k, self.sentences, self.history
        n, vocab = len(sentences), log_probs.shape[1]
        per_row = min(k, vocab)
        if per_row < vocab:
            best_tokens = np.argpartition(log_probs, vocab - per_row, axis=1)[:, -per_row:]
        else:
            best_tokens = np.broadcast_to(np.arange(vocab), log_probs.shape)
        total = (self.scores[:, None] + np.take_along_axis(log_probs, best_tokens, 1)) \
            .reshape(n, k * per_row)
        top = np.argsort(-total, axis=1, kind="stable")[:, :k]
        origin = (np.arange(n)[:, None] * k + top // per_row).ravel()
        token = best_tokens[origin, (top % per_row).ravel()]
        scores = np.take_along_axis(total, top, 1).ravel()
        token_lp = log_probs[origin, token].astype(np.float32)
        state = state[origin]
        history.add(origin, token, token_lp, attention[origin])
        self.t += 1
        ended = (token == self.eos_id) & np.isfinite(scores)
        for row in np.flatnonzero(ended):  # a few per step: finished hypotheses leave the beam
            b = sentences[row // k]
            hyp = _hypothesis(*history.read(row, ended=True), scores[row], True, self.alpha)
            self.candidates[b].append(hyp)
            self.found[b] += 1
            self.best_found[b] = max(self.best_found[b], hyp.score)
        scores = np.where(ended, -np.inf, scores)
        live = scores.reshape(n, k)
        best_live = live.max(axis=1)
        at_limit = self.t >= self.max_lengths[sentences]
        # log-probabilities only fall, so a live beam's raw score bounds its future; a length
        # penalty divides a negative score least at the longest length it could reach
        bound = np.where(best_live < 0, best_live / length_penalty(
            self.max_lengths[sentences] + 1, self.alpha), best_live)
        done = at_limit | ~np.isfinite(best_live) | (
            (self.found[sentences] >= k) & (self.best_found[sentences] >= bound))
        for s in np.flatnonzero(done):
            b = sentences[s]
            if at_limit[s]:
                for row in range(s * k, (s + 1) * k):
                    if np.isfinite(scores[row]):
                        self.candidates[b].append(_hypothesis(
                            *history.read(row, ended=False), scores[row], False, self.alpha))
            self.results[b] = max(self.candidates[b], key=lambda h: h.score, default=Hypothesis(
                [], [], np.zeros((0, self.source_len), np.float32), -np.inf, False))
        if done.any():
            keep_rows = np.flatnonzero(np.repeat(~done, k))
            self.sentences = sentences[~done]
            self.scores, self.prev = scores[keep_rows], token[keep_rows]
            self.state, self.memory, self.mask = state[keep_rows], self.memory[keep_rows], \
                self.mask[keep_rows]
            history.keep(keep_rows)
            self.rows_version = new_rows_version()
        else:
            self.scores, self.prev, self.state = scores, token, state

    def hypotheses(self) -> list[Hypothesis]:
        return [r for r in self.results if r is not None]


class _History:
    """Back-pointers of beam search: for each step, every output row's token, log-probability,
    attention, and the row of the step before it came from."""

    def __init__(self) -> None:
        self.origin: list[np.ndarray] = []  # per step: input row each output row extends
        self.token: list[np.ndarray] = []
        self.log_prob: list[np.ndarray] = []
        self.attention: list[np.ndarray] = []
        self.kept: list[np.ndarray | None] = []  # per step: output rows that became inputs

    def add(self, origin: np.ndarray, token: np.ndarray, log_prob: np.ndarray,
            attention: np.ndarray) -> None:
        self.origin.append(origin)
        self.token.append(token)
        self.log_prob.append(log_prob)
        self.attention.append(attention)
        self.kept.append(None)  # all rows, unless keep() says otherwise

    def keep(self, rows: np.ndarray) -> None:
        self.kept[-1] = rows

    def read(self, row: int, ended: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tokens, log-probabilities and attention rows leading to output `row` of the last
        step; `ended`: that row's token is EOS, which is not part of the output."""
        tokens, lps, atts = [], [], []
        t = len(self.token) - 1
        if ended:
            row, t = self._parent(row, t), t - 1
        while t >= 0:
            tokens.append(self.token[t][row])
            lps.append(self.log_prob[t][row])
            atts.append(self.attention[t][row])
            row, t = self._parent(row, t), t - 1
        source_len = self.attention[0].shape[1]
        return (np.array(tokens[::-1], np.int64), np.array(lps[::-1], np.float32),
                np.array(atts[::-1], np.float32).reshape(len(atts), source_len))

    def _parent(self, row: int, t: int) -> int:
        """The output row of step t - 1 that output `row` of step t extends."""
        source = int(self.origin[t][row])
        if t == 0:
            return source
        kept = self.kept[t - 1]
        return source if kept is None else int(kept[source])


def _hypothesis(tokens: np.ndarray, lps: np.ndarray, att: np.ndarray, score: float,
                finished: bool, alpha: float) -> Hypothesis:
    length = len(tokens) + int(finished)  # EOS counts as an output position
    return Hypothesis(tokens.tolist(), lps.tolist(), att,
                      float(score / length_penalty(length, alpha)), finished)
