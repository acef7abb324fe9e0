"""Translation metrics: sacrebleu BLEU and chrF on detokenised text, and how often attention
points at the source word a generated word is aligned to (toy corpus, where alignments are
known).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF

WORD_START = "\u2581"  # SentencePiece's "▁": the piece begins a new whitespace-separated word


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Corpus BLEU (13a tokenisation, exp smoothing: sacrebleu's defaults) and chrF, with the
    signatures that make the numbers comparable with published ones."""
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2),
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
            "bleu_detail": str(b)}


def piece_words(pieces: Sequence[str]) -> list[int]:
    """Word index of each piece (a piece starting with ▁ opens a word); -1 for special pieces
    such as </s>, which belong to no word."""
    words, current = [], -1
    for piece in pieces:
        if piece.startswith("<") and piece.endswith(">"):
            words.append(-1)
            continue
        if piece.startswith(WORD_START) or current < 0:
            current += 1
        words.append(current)
    return words


@dataclass
class AlignmentScore:
    words: int = 0  # generated words
    hits: int = 0  # generated words that match the reference there and attend to its source
    sentences: int = 0
    exact_sentences: int = 0  # generated word sequence equals the reference

    @property
    def accuracy(self) -> float:
        return self.hits / self.words if self.words else 0.0

    def add(self, attention: np.ndarray, source_pieces: Sequence[str],
            target_pieces: Sequence[str], reference: Sequence[str],
            alignment: Sequence[int]) -> None:
        """attention [target pieces, source pieces]; alignment[j]: source word of reference
        word j. A generated word counts as a hit when it equals reference word j at the same
        position and the attention summed over its pieces, gathered per source word (with
        </s> a candidate of its own), peaks on alignment[j]. Every other word is a miss."""
        src_words, tgt_words = piece_words(source_pieces), piece_words(target_pieces)
        n_src, n_tgt = max(src_words) + 1, max(tgt_words, default=-1) + 1
        # word-level attention [n_tgt, n_src + 1]; the last column collects special pieces
        to_tgt = np.zeros((n_tgt, len(target_pieces)))
        for i, w in enumerate(tgt_words):
            if w >= 0:  # a special piece (<unk>) in the output belongs to no word
                to_tgt[w, i] = 1.0
        to_src = np.zeros((len(source_pieces), n_src + 1))
        to_src[np.arange(len(source_pieces)), src_words] = 1.0  # -1 lands in the last column
        words_attention = to_tgt @ np.asarray(attention, np.float64) @ to_src
        generated = _words(target_pieces, tgt_words)
        for j, word in enumerate(generated):
            self.words += 1
            if j < len(reference) and word == reference[j] and \
                    int(words_attention[j].argmax()) == alignment[j]:
                self.hits += 1
        self.sentences += 1
        self.exact_sentences += generated == list(reference)

    def manifest_entry(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": round(self.accuracy, 4)}


def _words(pieces: Sequence[str], word_of: Sequence[int]) -> list[str]:
    out: list[str] = []
    for piece, w in zip(pieces, word_of, strict=True):
        if w < 0:
            continue
        if w >= len(out):
            out.append("")
        out[w] += piece.replace(WORD_START, "")
    return out
