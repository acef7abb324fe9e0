"""Score an exported translation model as the server runs it: SentencePiece in, the encoder and
decoder-step graphs in onnxruntime, greedy or beam search from serving.decoding, detokenised text
out, then sacrebleu against the references (and attention alignment on the toy corpus).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.decoding import Hypothesis
from training.data.parallel import ParallelCorpus
from training.export.seq2seq_graphs import OnnxTranslator, SearchOptions
from training.tokenizer import BOS_ID, EOS_ID, PAD_ID, TranslationTokenizer
from training.translation_metrics import AlignmentScore, corpus_scores


@dataclass
class DecodedCorpus:
    hypotheses: list[Hypothesis]
    texts: list[str]
    options: SearchOptions

    def describe(self) -> str:
        o = self.options
        how = "greedy search" if o.beam_size == 1 else \
            f"beam search (beam {o.beam_size}, length penalty {o.length_penalty})"
        return (f"{how}, at most {o.max_length_ratio:g} x source pieces + "
                f"{o.max_length_offset} tokens; serving.decoding over the exported graphs in "
                f"onnxruntime")


def decode_corpus(folder: Path, tokenizer: TranslationTokenizer, corpus: ParallelCorpus,
                  options: SearchOptions) -> DecodedCorpus:
    translator = OnnxTranslator(folder, PAD_ID, BOS_ID, EOS_ID)
    hyps = translator.translate_ids(tokenizer.encode_source(corpus.sources), options)
    return DecodedCorpus(hyps, [tokenizer.decode(h.tokens) for h in hyps], options)


def score(decoded: DecodedCorpus, corpus: ParallelCorpus) -> dict[str, Any]:
    scores = corpus_scores(decoded.texts, corpus.targets)
    scores["beam_size"] = decoded.options.beam_size
    scores["decoding"] = decoded.describe()
    scores["unfinished"] = sum(not h.finished for h in decoded.hypotheses)
    return scores


def alignment_score(decoded: DecodedCorpus, tokenizer: TranslationTokenizer,
                    corpus: ParallelCorpus) -> AlignmentScore:
    """Attention argmax vs the known word alignments (toy corpus only)."""
    if corpus.alignments is None:
        raise ValueError(f"{corpus.origin} has no word alignments")
    result = AlignmentScore()
    for h, source_ids, reference, alignment in zip(
            decoded.hypotheses, tokenizer.encode_source(corpus.sources), corpus.targets,
            corpus.alignments, strict=True):
        # the search pads attention rows to the batch's longest source; cut to this one
        result.add(h.attention[:, :len(source_ids)],
                   [tokenizer.source.id_to_piece(i) for i in source_ids],
                   [tokenizer.target.id_to_piece(i) for i in h.tokens], reference.split(),
                   alignment)
    return result
