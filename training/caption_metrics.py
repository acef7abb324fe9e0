"""Caption metrics in numpy: corpus BLEU-1..4, exact sequence match, attention localisation.

BLEU is Papineni et al.'s corpus BLEU computed here (no sacrebleu in the trainer set): clipped
n-gram precisions summed over the corpus against ALL references of each image, geometric mean of
BLEU-1..n with uniform weights, brevity penalty from the reference length closest to each
hypothesis (ties: the shorter), no smoothing. Tokens are training.data.captions.tokenize: lower
case, punctuation dropped; so "A dog ." and "a dog" are the same caption. Scores are in [0, 1].
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def corpus_bleu(hypotheses: Sequence[Sequence[str]],
                references: Sequence[Sequence[Sequence[str]]],
                max_n: int = 4) -> dict[str, float]:
    """{"bleu1": .., ..., "bleu{max_n}": .., "brevity_penalty": .., "length_ratio": ..}."""
    if len(hypotheses) != len(references):
        raise ValueError("one list of references per hypothesis")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        hyp_len += len(hyp)
        ref_len += min((len(r) for r in refs), key=lambda n: (abs(n - len(hyp)), n))
        for n in range(1, max_n + 1):
            counts = _ngrams(hyp, n)
            best: Counter = Counter()
            for r in refs:
                best |= _ngrams(r, n)  # max count of each n-gram over the references
            matches[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    bp = 1.0 if hyp_len > ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0)
    out: dict[str, float] = {}
    log_sum = 0.0
    for n in range(1, max_n + 1):
        p = matches[n - 1] / totals[n - 1] if totals[n - 1] else 0.0
        log_sum += math.log(p) if p > 0 else -math.inf
        out[f"bleu{n}"] = bp * math.exp(log_sum / n) if log_sum > -math.inf else 0.0
    out["brevity_penalty"] = bp
    out["length_ratio"] = hyp_len / ref_len if ref_len else 0.0
    return out


def exact_match(hypotheses: Sequence[Sequence[str]],
                references: Sequence[Sequence[Sequence[str]]]) -> float:
    """Share of hypotheses equal to one of their references, word for word."""
    hits = sum(any(list(h) == list(r) for r in refs)
               for h, refs in zip(hypotheses, references, strict=True))
    return hits / len(hypotheses) if hypotheses else 0.0


def box_cells(box: np.ndarray, image_size: tuple[int, int],
              grid: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box x0, y0, x1, y1 (exclusive) -> grid cells col0, row0, col1, row1 (inclusive)."""
    h, w = image_size
    rows, cols = grid
    cw, ch = w / cols, h / rows
    x0, y0, x1, y1 = (int(v) for v in box)
    return (int(x0 // cw), int(y0 // ch), int((x1 - 1) // cw), int((y1 - 1) // ch))


def attention_localisation(words: Sequence[Sequence[str]], attention: Sequence[np.ndarray],
                           truth: Sequence[Sequence[str]], boxes: Sequence[np.ndarray],
                           image_size: tuple[int, int], grid: tuple[int, int],
                           slack: int = 1) -> dict[str, float]:
    """Share of generated digit words whose attention peak lies in that digit's box.

    "That digit": the true digit at the word's position when the word names it; otherwise the
    first true digit of the same class; a word naming no digit of the image counts as a miss.
    The peak is the cell of largest weight in the word's row of attention [cells]; a hit when it
    lies within the box's cells widened by `slack` cells on every side.
    """
    hits = total = 0
    for gen, att, true, bxs in zip(words, attention, truth, boxes, strict=True):
        for t, word in enumerate(gen):
            total += 1
            if t < len(true) and true[t] == word:
                k = t
            elif word in true:
                k = list(true).index(word)
            else:
                continue
            peak = int(np.argmax(att[t]))
            row, col = divmod(peak, grid[1])
            c0, r0, c1, r1 = box_cells(bxs[k], image_size, grid)
            hits += (c0 - slack <= col <= c1 + slack) and (r0 - slack <= row <= r1 + slack)
    return {"attention_localisation": hits / total if total else 0.0,
            "localisation_words": float(total)}
