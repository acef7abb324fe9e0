"""A version's encoder and decoder step, and the search over them: the one decode that the
server runs for every Translate and Caption call and that training scores exported versions
with, so a figure published at export time is what the server gives.

The graphs are onnxruntime sessions, opened by the server with its own session settings or by
`EncoderDecoder.open` from a version folder. The search runs the step function it is given
(`EncoderDecoder.step`, or a PyTorch step for parity checks), so the only thing two callers
can differ in is the graphs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from serving.decoding.greedy import GreedySearch
from serving.decoding.search import BeamSearch, Hypothesis, Search, run_search
from serving.errors import InvalidInput
from serving.preprocess.tensors import pad_batch
from serving.repository.graph_io import (
    DECODER_STEP_FILE,
    ENCODER_FILE,
    ENCODER_OUTPUTS,
    MEMORY,
    PIXELS,
    PREV_IDS,
    SRC_IDS,
    SRC_LENGTHS,
    SRC_MASK,
    STATE,
    STEP_OUTPUTS,
)
from serving.repository.sections import CaptionDecoding, TranslationDecoding

MAX_BEAM_SIZE = 64
CPU = "CPUExecutionProvider"


class Session(Protocol):
    """What the decode needs of an onnxruntime session."""

    def run(self, output_names: list[str], input_feed: dict[str, Any]) -> list[Any]: ...


@dataclass(frozen=True)
class Encoded:
    """The encoder's output for a batch: memory [B, S, F], initial state [B, D], and which
    source positions are real (padding gets no attention)."""

    memory: np.ndarray
    state: np.ndarray
    mask: np.ndarray

    def split(self, sizes: Sequence[int]) -> list[Encoded]:
        """The rows of several calls encoded together, given back per call (`sizes` rows
        each, in order), each as wide as its own longest source: what encoding it alone
        gives, so its attention rows do not grow with its neighbours' sources."""
        parts, start = [], 0
        for size in sizes:
            end = start + size
            mask = self.mask[start:end]
            width = int(mask.sum(axis=1).max()) if size else 0
            parts.append(Encoded(self.memory[start:end, :width], self.state[start:end],
                                 mask[:, :width]))
            start = end
        return parts


class EncoderDecoder:
    def __init__(self, encoder: Session, decoder_step: Session) -> None:
        self.encoder, self.decoder_step = encoder, decoder_step

    @classmethod
    def open(cls, folder: Path, providers: Sequence[str] = (CPU,),
             threads: int | None = None) -> EncoderDecoder:
        """The graphs of a version folder in plain onnxruntime sessions (the trainer's)."""
        import onnxruntime as ort  # the server opens its sessions itself, with its settings

        options = ort.SessionOptions()
        options.log_severity_level = 3  # shape-annotation warnings would flood the output
        if threads:
            options.intra_op_num_threads = threads
        return cls(*(ort.InferenceSession(str(folder / name), options,
                                          providers=list(providers))
                     for name in (ENCODER_FILE, DECODER_STEP_FILE)))

    def encode_ids(self, ids: Sequence[Sequence[int]], pad_id: int) -> Encoded:
        """Source id lists, right-padded and masked."""
        src_ids, lengths = pad_batch(ids, pad_id)
        memory, state = self.encoder.run(list(ENCODER_OUTPUTS),
                                         {SRC_IDS: src_ids, SRC_LENGTHS: lengths})
        mask = np.arange(src_ids.shape[1])[None, :] < lengths[:, None]
        return Encoded(memory, state, mask)

    def encode_images(self, pixels: np.ndarray, input_name: str = PIXELS) -> Encoded:
        """float32 [N, C, H, W]; every image region may be attended (images have no padding)."""
        memory, state = self.encoder.run(list(ENCODER_OUTPUTS), {input_name: pixels})
        return Encoded(memory, state, np.ones(memory.shape[:2], bool))

    def step(self, prev: np.ndarray, state: np.ndarray, memory: np.ndarray,
             mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        log_probs, new_state, attention = self.decoder_step.run(
            list(STEP_OUTPUTS), {PREV_IDS: prev, STATE: state, MEMORY: memory, SRC_MASK: mask})
        return log_probs, new_state, attention


def new_search(encoded: Encoded, max_lengths: np.ndarray, beam_size: int,
               length_penalty: float, bos_id: int, eos_id: int) -> Search:
    """Greedy search if the beam is 1, beam search otherwise, not yet stepped."""
    if beam_size > MAX_BEAM_SIZE:
        raise InvalidInput(f"beam_size is at most {MAX_BEAM_SIZE}")
    if beam_size < 1:
        raise InvalidInput(f"beam_size must be at least 1, not {beam_size}")
    lengths = np.asarray(max_lengths, np.int64)
    if beam_size == 1:
        return GreedySearch(encoded.state, encoded.memory, encoded.mask, bos_id, eos_id,
                            lengths)
    return BeamSearch(encoded.state, encoded.memory, encoded.mask, bos_id, eos_id, lengths,
                      beam_size, length_penalty)


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches of similar lengths, shortest first: little padding per batch."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def translate_ids(graphs: EncoderDecoder, sources: Sequence[Sequence[int]], pad_id: int,
                  bos_id: int, eos_id: int, decoding: TranslationDecoding,
                  batch_size: int = 64) -> list[Hypothesis]:
    """Source id lists (as the encoder takes them) -> one hypothesis each, in order, with the
    manifest's decoding: its beam, length penalty and length limit.

    The result does not depend on the batching: padding never reaches a real position."""
    out: list[Hypothesis | None] = [None] * len(sources)
    for chunk in length_batches([len(s) for s in sources], batch_size):
        ids = [sources[i] for i in chunk]
        limits = np.array([decoding.max_target_length(len(s)) for s in ids])
        search = new_search(graphs.encode_ids(ids, pad_id), limits, decoding.default_beam_size,
                            decoding.length_penalty, bos_id, eos_id)
        for i, h in zip(chunk, run_search(search, graphs.step), strict=True):
            out[i] = h
    return out  # type: ignore[return-value]


def caption_images(graphs: EncoderDecoder, images: np.ndarray, bos_id: int, eos_id: int,
                   decoding: CaptionDecoding, batch_size: int = 256,
                   input_name: str = PIXELS) -> list[Hypothesis]:
    """Images [N, C, H, W] at the graph's size (raw 0..255) -> one hypothesis each, with the
    manifest's decoding."""
    out: list[Hypothesis] = []
    for start in range(0, len(images), batch_size):
        encoded = graphs.encode_images(images[start:start + batch_size].astype(np.float32),
                                       input_name)
        limits = np.full(len(encoded.state), decoding.max_length, np.int64)
        out += run_search(new_search(encoded, limits, decoding.default_beam_size,
                                     decoding.length_penalty, bos_id, eos_id), graphs.step)
    return out
