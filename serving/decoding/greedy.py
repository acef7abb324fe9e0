"""Greedy search: the most probable token at every step, per sentence.

The rows of greedy searches are stepped as one batch, `GreedyRows`: a search stepped alone
has a batch of its own, while a step scheduler keeps one for all the greedy calls it runs,
which join it at admission and whose rows leave as their sentences end. The batch holds every
row's step inputs and its history (tokens, their log-probabilities and attention rows) in
arrays of its own, so a step costs the same few array operations however many calls share
it, and a sentence's hypothesis is read out of those arrays once, when it ends: with many
one-sentence calls per step, per-call array work cost more than the decoder steps themselves.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from serving.decoding.search import Hypothesis, Search, StepFn, new_rows_version, run_search


def greedy_decode(step: StepFn, state: np.ndarray, memory: np.ndarray, mask: np.ndarray,
                  bos_id: int, eos_id: int, max_lengths: np.ndarray) -> list[Hypothesis]:
    return run_search(GreedySearch(state, memory, mask, bos_id, eos_id, max_lengths), step)


class GreedySearch(Search):
    """One call's sentences; their rows are stepped by the GreedyRows they joined."""

    def __init__(self, state: np.ndarray, memory: np.ndarray, mask: np.ndarray, bos_id: int,
                 eos_id: int, max_lengths: np.ndarray) -> None:
        self.batch, self.source_len = mask.shape
        self.bos_id, self.eos_id = bos_id, eos_id
        limits = np.asarray(max_lengths, dtype=np.int64)
        live = np.flatnonzero(limits > 0)
        self.results: list[Hypothesis | None] = [
            None if limit > 0 else Hypothesis([], [], np.zeros((0, self.source_len), np.float32),
                                              0.0, False) for limit in limits.tolist()]
        self.pending = len(live)  # sentences still decoding
        if len(live) < self.batch:
            state, memory, mask, limits = state[live], memory[live], mask[live], limits[live]
        # what joining a batch of rows takes from this search, once
        self.start: tuple[np.ndarray, ...] | None = (live, state, memory, mask, limits)
        self.rows: GreedyRows | None = None

    @property
    def done(self) -> bool:  # type: ignore[override]
        return not self.pending

    def stepper(self, shared: dict[Hashable, Any]) -> GreedyRows:
        rows = shared.get((GreedyRows, self.eos_id, self.bos_id))
        if rows is None:
            rows = shared[GreedyRows, self.eos_id, self.bos_id] = GreedyRows(self.bos_id,
                                                                            self.eos_id)
        rows.join(self)
        return rows

    def leave(self) -> None:
        if self.rows is not None:
            self.rows.leave(self)

    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self._own_rows().inputs()

    def advance(self, log_probs: np.ndarray, state: np.ndarray, attention: np.ndarray) -> None:
        self._own_rows().advance(log_probs, state, attention)

    def _own_rows(self) -> GreedyRows:
        """Stepped alone: a batch of rows of its own."""
        if self.rows is None:
            self.stepper({})
        assert self.rows is not None
        return self.rows

    def hypotheses(self) -> list[Hypothesis]:
        return self.results  # type: ignore[return-value]


class GreedyRows:
    """The rows of many greedy searches stepped as one batch.

    Per row of the step batch, in batch order: the previous token, the state, the memory and
    mask (padded to the widest source; padding is masked, so it gets no attention), the
    length limit, the steps taken and the row's slot in the history arrays. Rows that end are
    replaced by the batch's last rows, so a step moves only the rows that ended, never the
    whole batch's memory.
    """

    def __init__(self, bos_id: int, eos_id: int) -> None:
        self.bos_id, self.eos_id = bos_id, eos_id
        self.rows_version = new_rows_version()
        self.n = 0
        self.prev = np.zeros(0, np.int64)
        self.state: np.ndarray | None = None
        self.limit = np.zeros(0, np.int64)
        self.t = np.zeros(0, np.int64)
        self.slot = np.zeros(0, np.int64)
        self.width = np.zeros(0, np.int64)  # each row's search's source width
        self.memory: np.ndarray | None = None  # [capacity, widest, ...]
        self.mask = np.zeros((0, 0), bool)
        # per slot: the row's search and sentence, and its history
        self.owner: list[tuple[GreedySearch, int] | None] = []
        self.free: list[int] = []
        self.tokens = np.zeros((0, 0), np.int64)
        self.log_probs = np.zeros((0, 0), np.float32)
        self.attention = np.zeros((0, 0, 0), np.float32)
        self.total = np.zeros(0, np.float64)  # summed in step order, as a running total is
        self.joining: list[GreedySearch] = []  # searches that joined since the last step
        self.ended: list[GreedySearch] = []  # searches whose sentences all ended, untaken

    def __len__(self) -> int:
        return self.n + sum(len(search.start[0]) for search in self.joining
                            if search.start is not None)

    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.joining:
            self._add_joining()
        assert self.state is not None and self.memory is not None
        return self.prev, self.state, self.memory[:self.n], self.mask[:self.n]

    def join(self, search: GreedySearch) -> None:
        """The search's live sentences join as rows of the next step. The searches that join
        between two steps are added to the arrays together, when the step asks for its
        inputs: one concatenation per array for all of them, not one per search."""
        assert search.start is not None and search.rows is None, "a search joins once"
        search.rows = self
        if len(search.start[0]):
            self.joining.append(search)
        else:
            search.start = None

    def _add_joining(self) -> None:
        joining, self.joining = self.joining, []
        starts = []
        for search in joining:
            assert search.start is not None
            starts.append(search.start)
            search.start = None
        k = sum(len(live) for live, *_ in starts)
        width = max(mask.shape[1] for *_, mask, _ in starts)
        n = self.n
        self._fit_rows(n + k, width, starts[0][2])
        self._fit_history(k, max(int(limits.max()) for *_, limits in starts), width)
        assert self.memory is not None
        slots = [self.free.pop() for _ in range(k)]
        row = n
        for search, (live, _, memory, mask, _) in zip(joining, starts, strict=True):
            end, w = row + len(live), mask.shape[1]
            self.memory[row:end, :w] = memory
            self.memory[row:end, w:] = 0
            self.mask[row:end, :w] = mask
            self.mask[row:end, w:] = False
            for slot, sentence in zip(slots[row - n:end - n], live.tolist(), strict=True):
                self.owner[slot] = (search, sentence)
            row = end
        slot_ids = np.array(slots, np.int64)
        self.total[slot_ids] = 0.0
        states = [state for _, state, *_ in starts]
        self.prev = np.concatenate([self.prev, np.full(k, self.bos_id, np.int64)])
        # a copy even when alone: rows that end are moved within these arrays in place
        self.state = np.concatenate(states if self.state is None or not n else
                                    [self.state, *states])
        self.limit = np.concatenate([self.limit, *(limits for *_, limits in starts)])
        self.t = np.concatenate([self.t, np.zeros(k, np.int64)])
        self.slot = np.concatenate([self.slot, slot_ids])
        self.width = np.concatenate([self.width, np.repeat(
            [search.source_len for search in joining], [len(live) for live, *_ in starts])])
        self.n = n + k
        self.rows_version = new_rows_version()

    def leave(self, search: GreedySearch) -> None:
        """The search's rows leave unfinished (nobody waits for them any more)."""
        if search in self.joining:
            self.joining.remove(search)
            search.start = None
            return
        gone = np.array([self.owner[s] is not None and self.owner[s][0] is search  # type: ignore[index]
                         for s in self.slot.tolist()], bool)
        for s in self.slot[gone].tolist():
            self._free(s)
        if gone.any():
            self._remove(gone)

    def advance(self, log_probs: np.ndarray, state: np.ndarray, attention: np.ndarray) -> None:
        best = log_probs.argmax(axis=1)
        lp = log_probs[np.arange(len(best)), best]
        slot, t = self.slot, self.t
        self.tokens[slot, t] = best
        self.log_probs[slot, t] = lp
        self.attention[slot, t, :attention.shape[1]] = attention
        self.total[slot] += lp
        self.t = t = t + 1
        self.prev, self.state = best, state
        ended = (best == self.eos_id) | (t >= self.limit)
        if not ended.any():
            return
        for row in np.flatnonzero(ended).tolist():
            self._finish(row)
        if not self.state.flags.writeable:
            self.state = self.state.copy()
        self._remove(ended)

    def take_ended(self) -> list[Search]:
        ended, self.ended = self.ended, []
        return ended  # type: ignore[return-value]

    def _finish(self, row: int) -> None:
        """The ended row's hypothesis, to its search."""
        s, steps = int(self.slot[row]), int(self.t[row])
        finished = bool(self.prev[row] == self.eos_id)
        n = steps - finished  # EOS is not part of the output
        owner = self.owner[s]
        assert owner is not None
        search, sentence = owner
        search.results[sentence] = Hypothesis(
            self.tokens[s, :n].tolist(), self.log_probs[s, :n].tolist(),
            self.attention[s, :n, :search.source_len].copy(), float(self.total[s]), finished)
        search.pending -= 1
        if not search.pending:
            self.ended.append(search)
        self._free(s)

    def _free(self, slot: int) -> None:
        self.owner[slot] = None
        self.free.append(slot)

    def _remove(self, gone: np.ndarray) -> None:
        """Drop the rows where `gone`: the last rows that stay move into their places."""
        assert self.state is not None and self.memory is not None
        m = self.n - int(gone.sum())
        holes = np.flatnonzero(gone[:m])
        movers = m + np.flatnonzero(~gone[m:])
        for name in ("prev", "state", "limit", "t", "slot", "width"):
            array = getattr(self, name)
            array[holes] = array[movers]
            setattr(self, name, array[:m])
        for array in (self.memory, self.mask):
            array[holes] = array[movers]
        self.n = m
        widest = int(self.width.max()) if m else 0
        if widest < self.mask.shape[1] * 3 // 4:  # the widest sources left: narrower steps
            self._resize(len(self.mask), widest, self.memory)
        self.rows_version = new_rows_version()

    def _fit_rows(self, rows: int, width: int, memory: np.ndarray) -> None:
        capacity, widest = self.mask.shape
        if self.memory is None or self.memory.shape[2:] != memory.shape[2:] or \
                self.memory.dtype != memory.dtype:
            assert not self.n, "every row of a batch has memory of one shape"
            self.memory = None
            self._resize(rows, width, memory)
        elif rows > capacity or width > widest:
            self._resize(max(rows, 2 * capacity) if rows > capacity else capacity,
                         max(width, widest), memory)

    def _resize(self, capacity: int, width: int, like: np.ndarray) -> None:
        memory = np.zeros((capacity, width, *like.shape[2:]), like.dtype)
        mask = np.zeros((capacity, width), bool)
        if self.memory is not None and self.n:
            keep = min(width, self.mask.shape[1])
            memory[:self.n, :keep] = self.memory[:self.n, :keep]
            mask[:self.n, :keep] = self.mask[:self.n, :keep]
        self.memory, self.mask = memory, mask

    def _fit_history(self, rows: int, steps: int, width: int) -> None:
        slots, length, widest = self.attention.shape
        if len(self.free) >= rows and steps <= length and width <= widest:
            return
        grown = max(2 * slots, slots - len(self.free) + rows)
        length, widest = max(length, steps), max(widest, width)
        tokens = np.zeros((grown, length), np.int64)
        log_probs = np.zeros((grown, length), np.float32)
        attention = np.zeros((grown, length, widest), np.float32)
        total = np.zeros(grown, np.float64)
        tokens[:slots, :self.tokens.shape[1]] = self.tokens
        log_probs[:slots, :self.log_probs.shape[1]] = self.log_probs
        attention[:slots, :self.attention.shape[1], :self.attention.shape[2]] = self.attention
        total[:slots] = self.total
        self.tokens, self.log_probs, self.attention, self.total = \
            tokens, log_probs, attention, total
        self.owner += [None] * (grown - slots)
        self.free += range(grown - 1, slots - 1, -1)
