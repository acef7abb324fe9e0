"""Attention image captioning: images in, words out, with each word's attention over the
encoder's feature grid (rows x cols of image regions).

Concurrent Caption calls with the same beam size merge into one decode (CaptionBatching):
images are decoded and checked per call first, and every image keeps its own call's length
limit.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.batching import split
from serving.decoding.search import Hypothesis, Search, run_search
from serving.repository import CaptionDecoding, Manifest, TensorSpec, VocabularyTokenizer
from serving.repository.graph_io import DECODER_STEP
from serving.runners.base import Parameters, Tensors
from serving.runners.image import IMAGE_INPUT, ImageInput
from serving.runners.sequence import (
    SequenceRunner,
    generated_tensors,
    parse_search_options,
    pieces_tensor,
    texts_tensor,
)
from serving.runtime.session import SessionConfig


@dataclass(frozen=True)
class CaptionResult:
    text: str
    tokens: list[str]
    token_ids: list[int]
    token_probabilities: list[float]
    attention: np.ndarray  # [len(tokens), grid rows, grid cols]
    score: float
    finished: bool


@dataclass(frozen=True)
class CaptionCall:
    pixels: np.ndarray  # float32 [N, C, H, W], checked
    beam_size: int  # 0: the model's default
    max_length: int  # words per caption, within the model's limit


class CaptionBatching:
    """Caption calls merged into one decode: images stacked, same beam size."""

    def __init__(self, runner: CaptionerRunner) -> None:
        self.runner = runner

    def rows(self, payload: CaptionCall) -> int:
        return len(payload.pixels)

    def signature(self, payload: CaptionCall) -> Hashable:
        return payload.beam_size or self.runner.default_beam

    def run(self, payloads: list[CaptionCall]) -> list[list[CaptionResult]]:
        pixels = np.concatenate([p.pixels for p in payloads])
        limits = np.concatenate([np.full(len(p.pixels), p.max_length, np.int64)
                                 for p in payloads])
        results = self.runner.decode(pixels, limits, payloads[0].beam_size)
        return split(results, [len(p.pixels) for p in payloads])

    def inline_kind(self, rows: int) -> Hashable | None:
        return None  # a whole decode: never on the event loop


class CaptionSteps:
    """Caption calls decoded step by step together (serving.decoding.scheduler)."""

    def __init__(self, runner: CaptionerRunner) -> None:
        self.runner = runner
        self.step = runner.step

    def rows(self, payload: CaptionCall) -> int:
        return self.runner.rows(len(payload.pixels), payload.beam_size)

    def begin(self, payloads: list[CaptionCall]) -> list[Search]:
        # each call's images encoded alone: convolution kernels change with the batch, so a
        # joint run would make a caption's attention depend on its neighbours' images in the
        # last bits; an image encoder's run costs far more than its call overhead anyway
        return [self.runner.start(p.pixels, np.full(len(p.pixels), p.max_length, np.int64),
                                  p.beam_size) for p in payloads]

    def finish(self, payload: CaptionCall, hypotheses: list[Hypothesis]) -> list[CaptionResult]:
        return self.runner.results(hypotheses)


class CaptionerRunner(ImageInput, SequenceRunner):
    task = "caption"
    # the image encoder is a CNN, a few large operators: like a classifier, one thread per core
    # (the bench captioner's encoder on two idle cores: 8 images in 1.6 ms on two threads,
    # 2.3 ms on one)
    threads = {DECODER_STEP: 1}

    def __init__(self, manifest: Manifest, version_dir: Path, config: SessionConfig) -> None:
        super().__init__(manifest, version_dir, config)
        # Manifest.from_dict gives a caption model these three sections
        tok, decoding, grid = manifest.tokenizer, manifest.decoding, manifest.grid
        assert isinstance(tok, VocabularyTokenizer) and \
            isinstance(decoding, CaptionDecoding) and grid is not None
        self.vocab = (version_dir / tok.vocab_file).read_text(encoding="utf-8").splitlines()
        self.join = tok.join
        self.grid = (grid.rows, grid.cols)
        self.max_length = decoding.max_length

    def warmup(self) -> None:
        # two batch sizes and both searches: a graph with a fixed batch axis fails here
        self.caption(np.zeros((1, *self.chw), np.float32), beam_size=1, max_length=2)
        self.caption(np.zeros((3, *self.chw), np.float32), beam_size=2, max_length=2)

    @property
    def input_specs(self) -> list[TensorSpec]:
        # encoded PNG/JPEG, one per element; a pixel tensor is accepted as well
        return [TensorSpec(IMAGE_INPUT, "bytes", [-1])]

    @property
    def output_specs(self) -> list[TensorSpec]:
        rows, cols = self.grid
        return [TensorSpec("caption", "bytes", [-1]),
                TensorSpec("token_ids", "int64", [-1, -1]),
                TensorSpec("tokens", "bytes", [-1, -1]),
                TensorSpec("token_probabilities", "float32", [-1, -1]),
                TensorSpec("attention", "float32", [-1, -1, rows, cols]),
                TensorSpec("caption_lengths", "int32", [-1]),
                TensorSpec("scores", "float32", [-1]),
                TensorSpec("finished", "bool", [-1])]

    def check(self, inputs: Tensors, parameters: Parameters) -> CaptionCall:
        """Encoded images or a pixel tensor, checked; beam_size and max_length parameters."""
        options = parse_search_options(parameters)
        rows = len(next(iter(inputs.values())))
        limit = self.limit(options.get("max_length", 0))
        cells = self.grid[0] * self.grid[1]
        self.check_cost(rows, options.get("beam_size", 0), rows * limit, cells, cells)
        return CaptionCall(self.pixels_from_inputs(inputs), options.get("beam_size", 0), limit)

    def batch_strategy(self) -> CaptionBatching:
        return CaptionBatching(self)

    def limit(self, max_length: int = 0) -> int:
        """Words a caption may get: the model's limit caps a request's, so a huge
        max_length cannot decode for hours."""
        return min(max_length or self.max_length, self.max_length)

    def caption(self, pixels: np.ndarray, beam_size: int = 0,
                max_length: int = 0) -> list[CaptionResult]:
        return self.decode(pixels, np.full(len(pixels), self.limit(max_length), np.int64),
                           beam_size)

    def decode(self, pixels: np.ndarray, limits: np.ndarray,
               beam_size: int = 0) -> list[CaptionResult]:
        """Encoder once over the images, then the search over the decoder step; limits are
        words per image."""
        return self.results(run_search(self.start(pixels, limits, beam_size), self.step))

    def start(self, pixels: np.ndarray, limits: np.ndarray, beam_size: int = 0) -> Search:
        """The encoder over the images, and their search, not yet stepped."""
        return self.new_search(self.graphs.encode_images(pixels, self.input_name), limits,
                               beam_size)

    def step_strategy(self) -> CaptionSteps:
        return CaptionSteps(self)

    def results(self, hyps: list[Hypothesis]) -> list[CaptionResult]:
        results = []
        for h in hyps:
            words = [self.vocab[t] if t < len(self.vocab) else "<unk>" for t in h.tokens]
            results.append(CaptionResult(
                text=self.join.join(words), tokens=words, token_ids=list(h.tokens),
                token_probabilities=np.exp(h.token_log_probs).tolist(),
                attention=h.attention.reshape(len(h.tokens), *self.grid),
                score=h.score, finished=h.finished))
        return results

    def result_tensors(self, results: list[CaptionResult]) -> dict[str, np.ndarray]:
        """Captions as padded tensors: words b"" and ids -1 past each end, attention zero."""
        t = max((len(r.token_ids) for r in results), default=0)
        attention = np.zeros((len(results), t, *self.grid), np.float32)
        for i, r in enumerate(results):
            attention[i, :len(r.token_ids)] = r.attention
        return {"caption": texts_tensor([r.text for r in results]),
                "tokens": pieces_tensor([r.tokens for r in results], t),
                "attention": attention,
                "caption_lengths": np.array([len(r.token_ids) for r in results], np.int32),
                **generated_tensors(results, [r.token_ids for r in results], t)}
