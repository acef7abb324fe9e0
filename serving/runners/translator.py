"""Attention encoder-decoder translation: SentencePiece in, beam or greedy search over the
exported encoder and decoder step, translation with per-piece probabilities and attention out.

Concurrent Translate calls merge into one decode (SentenceBatching): sentences are tokenised
and checked per call first, so one bad call never fails another, then padded and masked
together; calls merge only with calls of the same search (beam size) whose longest sentence
falls in the same length bucket (powers of two), which bounds the padding to about 2x.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from serving.batching import split
from serving.decoding.search import Hypothesis, Search, run_search
from serving.errors import InvalidInput
from serving.preprocess.text import decode_texts
from serving.repository import (
    Manifest,
    SentencePieceTokenizer,
    TensorSpec,
    TranslationDecoding,
    TranslationLimits,
)
from serving.runners.base import Parameters, Tensors
from serving.runners.sequence import (
    SequenceRunner,
    generated_tensors,
    parse_search_options,
    pieces_tensor,
    texts_tensor,
)
from serving.runtime.session import SessionConfig

TEXT_INPUT = "text"
# tokenising this many bytes of text takes well under a millisecond: more goes to a worker
INLINE_TEXT_BYTES = 16 * 1024


@dataclass(frozen=True)
class TranslationResult:
    text: str
    source_pieces: list[str]
    target_pieces: list[str]
    target_ids: list[int]
    token_probabilities: list[float]
    attention: np.ndarray  # [len(target_pieces), len(source_pieces)]
    score: float
    finished: bool


@dataclass(frozen=True)
class Sources:
    """Tokenised, checked sentences and the most target pieces each may get."""

    ids: list[list[int]]
    pieces: list[list[str]]
    limits: list[int]

    @classmethod
    def concat(cls, parts: list[Sources]) -> Sources:
        return cls([i for p in parts for i in p.ids], [x for p in parts for x in p.pieces],
                   [n for p in parts for n in p.limits])


@dataclass(frozen=True)
class TranslationCall:
    sources: Sources
    beam_size: int  # 0: the model's default


class SentenceBatching:
    """Translate calls merged into one decode: same beam size, same source-length bucket."""

    def __init__(self, runner: TranslatorRunner) -> None:
        self.runner = runner

    def rows(self, payload: TranslationCall) -> int:
        return len(payload.sources.ids)

    def signature(self, payload: TranslationCall) -> Hashable:
        longest = max(len(i) for i in payload.sources.ids)
        return payload.beam_size or self.runner.default_beam, longest.bit_length()

    def run(self, payloads: list[TranslationCall]) -> list[list[TranslationResult]]:
        merged = Sources.concat([p.sources for p in payloads])
        results = self.runner.decode(merged, payloads[0].beam_size)
        return split(results, [len(p.sources.ids) for p in payloads])

    def inline_kind(self, rows: int) -> Hashable | None:
        return None  # a whole decode: never on the event loop


class TranslationSteps:
    """Translate calls decoded step by step together (serving.decoding.scheduler): each
    call's sentences are encoded on admission and their rows join the running step batch."""

    def __init__(self, runner: TranslatorRunner) -> None:
        self.runner = runner
        self.step = runner.step

    def rows(self, payload: TranslationCall) -> int:
        return self.runner.rows(len(payload.sources.ids), payload.beam_size)

    def begin(self, payloads: list[TranslationCall]) -> list[Search]:
        return self.runner.start_all([(p.sources, p.beam_size) for p in payloads])

    def finish(self, payload: TranslationCall,
               hypotheses: list[Hypothesis]) -> list[TranslationResult]:
        return self.runner.results(hypotheses, payload.sources)


class TranslatorRunner(SequenceRunner):
    task = "translate"

    def __init__(self, manifest: Manifest, version_dir: Path, config: SessionConfig) -> None:
        super().__init__(manifest, version_dir, config)
        # Manifest.from_dict gives a translate model these three sections
        tok, decoding, limits = manifest.tokenizer, manifest.decoding, manifest.limits
        assert isinstance(tok, SentencePieceTokenizer) and \
            isinstance(decoding, TranslationDecoding) and isinstance(limits, TranslationLimits)
        self.tokenizer, self.translation_decoding = tok, decoding
        self.source_sp = spm.SentencePieceProcessor(model_file=str(version_dir /
                                                                   tok.source_model))
        self.target_sp = spm.SentencePieceProcessor(model_file=str(version_dir /
                                                                   tok.target_file))
        self.max_source_pieces = limits.max_source_pieces
        # every piece by id, looked up per token as a list index: a call to the tokenizer per
        # token cost a twentieth of a one-sentence call's work on the step loop
        self.source_piece_by_id, self.target_piece_by_id = (
            [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
            for sp in (self.source_sp, self.target_sp))

    def warmup(self) -> None:
        # two batch sizes and both searches: a graph with a fixed batch axis fails here
        self.translate(["a"], beam_size=1, max_length=2)
        self.translate(["a", "b", "c"], beam_size=2, max_length=2)

    @property
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(TEXT_INPUT, "bytes", [-1])]  # UTF-8 sentences, one per element

    @property
    def output_specs(self) -> list[TensorSpec]:
        return [TensorSpec("translation", "bytes", [-1]),
                TensorSpec("token_ids", "int64", [-1, -1]),
                TensorSpec("target_pieces", "bytes", [-1, -1]),
                TensorSpec("token_probabilities", "float32", [-1, -1]),
                TensorSpec("attention", "float32", [-1, -1, -1]),
                TensorSpec("target_lengths", "int32", [-1]),
                TensorSpec("source_pieces", "bytes", [-1, -1]),
                TensorSpec("source_lengths", "int32", [-1]),
                TensorSpec("scores", "float32", [-1]),
                TensorSpec("finished", "bool", [-1])]

    def checks_inline(self, inputs: Tensors) -> bool:
        texts = inputs.get(TEXT_INPUT)
        return texts is None or sum(len(t) for t in texts.reshape(-1)) <= INLINE_TEXT_BYTES

    def check(self, inputs: Tensors, parameters: Parameters) -> TranslationCall:
        """UTF-8 texts, tokenised and checked; beam_size and max_length parameters."""
        if TEXT_INPUT not in inputs:
            raise InvalidInput(f"input {TEXT_INPUT!r} (UTF-8 texts) is required")
        options = parse_search_options(parameters)
        texts = decode_texts(inputs[TEXT_INPUT].reshape(-1))
        sources = self.prepare(texts, options.get("max_length", 0))
        longest = max(len(i) for i in sources.ids)
        self.check_cost(len(sources.ids), options.get("beam_size", 0), sum(sources.limits),
                        longest, longest)
        return TranslationCall(sources, options.get("beam_size", 0))

    def batch_strategy(self) -> SentenceBatching:
        return SentenceBatching(self)

    def prepare(self, texts: list[str], max_length: int = 0) -> Sources:
        """Tokenise and check one call's texts: InvalidInput names the offending text."""
        if not texts:
            raise InvalidInput("no text to translate")
        ids = []
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidInput(f"text {i} is empty")
            pieces = self.source_sp.encode(text, out_type=int)
            pieces = [self.bos_id] * self.tokenizer.add_bos_to_source + pieces + \
                [self.eos_id] * self.tokenizer.add_eos_to_source
            if len(pieces) > self.max_source_pieces:
                raise InvalidInput(f"text {i} has {len(pieces)} pieces; this model takes at "
                                   f"most {self.max_source_pieces}")
            ids.append(pieces)
        limits = [self.translation_decoding.max_target_length(len(p)) for p in ids]
        if max_length:
            limits = [min(n, max_length) for n in limits]
        return Sources(ids, [[self.source_piece_by_id[i] for i in p] for p in ids], limits)

    def decode(self, sources: Sources, beam_size: int = 0) -> list[TranslationResult]:
        """Encoder once over the padded sentences, then the search over the decoder step."""
        return self.results(run_search(self.start(sources, beam_size), self.step), sources)

    def start(self, sources: Sources, beam_size: int = 0) -> Search:
        """The encoder over the padded sentences, and their search, not yet stepped."""
        return self.start_all([(sources, beam_size)])[0]

    def start_all(self, calls: Sequence[tuple[Sources, int]]) -> list[Search]:
        """start for several calls (sources, beam) with one encoder run over all their
        sentences: a step batch admits a few calls at a time, and one run costs little
        more than one call's."""
        merged = Sources.concat([sources for sources, _ in calls])
        encoded = self.graphs.encode_ids(merged.ids, self.tokenizer.pad_id)
        return [self.new_search(part, np.array(sources.limits, np.int64), beam)
                for part, (sources, beam) in zip(
                    encoded.split([len(sources.ids) for sources, _ in calls]), calls,
                    strict=True)]

    def results(self, hyps: list[Hypothesis], sources: Sources) -> list[TranslationResult]:
        return [self._result(h, pieces) for h, pieces in zip(hyps, sources.pieces, strict=True)]

    def step_strategy(self) -> TranslationSteps:
        return TranslationSteps(self)

    def translate(self, texts: list[str], beam_size: int = 0,
                  max_length: int = 0) -> list[TranslationResult]:
        return self.decode(self.prepare(texts, max_length), beam_size)

    def _result(self, h: Hypothesis, source_pieces: list[str]) -> TranslationResult:
        return TranslationResult(
            text=self.target_sp.decode(h.tokens),
            source_pieces=source_pieces,
            target_pieces=[self.target_piece_by_id[t] for t in h.tokens],
            target_ids=list(h.tokens),
            token_probabilities=np.exp(h.token_log_probs).tolist(),
            attention=h.attention[:, :len(source_pieces)],
            score=h.score, finished=h.finished)

    def result_tensors(self, results: list[TranslationResult]) -> dict[str, np.ndarray]:
        """Translations as padded tensors: pieces b"" and ids -1 past each end; attention
        [n, target, source], zero outside each row's own lengths."""
        t = max((len(r.target_ids) for r in results), default=0)
        s = max(len(r.source_pieces) for r in results)
        attention = np.zeros((len(results), t, s), np.float32)
        for i, r in enumerate(results):
            attention[i, :len(r.target_ids), :r.attention.shape[1]] = r.attention
        return {"translation": texts_tensor([r.text for r in results]),
                "target_pieces": pieces_tensor([r.target_pieces for r in results], t),
                "attention": attention,
                "target_lengths": np.array([len(r.target_ids) for r in results], np.int32),
                "source_pieces": pieces_tensor([r.source_pieces for r in results], s),
                "source_lengths": np.array([len(r.source_pieces) for r in results], np.int32),
                **generated_tensors(results, [r.target_ids for r in results], t)}
