"""What translation and captioning share: an encoder, one decoder step, and search over it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.decoding.encoder_decoder import MAX_BEAM_SIZE, Encoded, EncoderDecoder, new_search
from serving.decoding.search import Search
from serving.errors import InvalidInput, TooLarge
from serving.preprocess.limits import input_limits
from serving.repository import Decoding, Manifest
from serving.repository.graph_io import DECODER_STEP, ENCODER, MEMORY, MEMORY_KEYS
from serving.runners.base import Runner
from serving.runtime.session import SessionConfig

MAX_OPTION = 2**31 - 1  # as the int32 fields of the project's own API


class SequenceRunner(Runner):
    # a decoder step is dozens of tiny operators, run again and again: without spinning each
    # of them wakes the pool's threads (measured, two threads on two busy cores: a 20-step
    # greedy decode of one sentence took 75 ms without spinning, 33 ms with it)
    spinning = True
    # and one thread beats any pool for a decoder step, and for an encoder of recurrent
    # steps: operators this small gain less from a second thread than handing work to it
    # costs (the real-data translator on two cores: a decoder step of one row took 0.11 ms on
    # one thread, 0.17 ms on two spinning ones; under 32 one-sentence callers the server spent
    # 1.9 ms of CPU per call instead of 3.7 and served ~25% more). Only an idle machine
    # stepping 128 rows ran faster on two (3.8 vs 5.0 ms, at twice the CPU): --intra-op-threads
    # sets it
    threads = {ENCODER: 1, DECODER_STEP: 1}

    def __init__(self, manifest: Manifest, version_dir: Path, config: SessionConfig) -> None:
        super().__init__(manifest, version_dir, config)
        assert manifest.decoding is not None and manifest.tokenizer is not None  # from_dict
        self.decoding: Decoding = manifest.decoding
        self.default_beam = self.decoding.default_beam_size
        self.bos_id, self.eos_id = manifest.tokenizer.bos_id, manifest.tokenizer.eos_id
        self.graphs = EncoderDecoder(self.sessions[ENCODER], self.sessions[DECODER_STEP])
        self.step = self.graphs.step
        # float32 values per source position the search copies for every row (the memory,
        # and the attention keys where the encoder serves them)
        self.memory_width = sum(
            int(i.shape[-1]) for i in self.sessions[DECODER_STEP].get_inputs()
            if i.name in (MEMORY, MEMORY_KEYS) and isinstance(i.shape[-1], int))

    def check_cost(self, rows: int, beam_size: int, steps: int, source_len: int,
                   output_width: int) -> None:
        """A call's decode, estimated before it is queued: rows x beam x maximum length
        decoder-step rows, the memory the search holds, and the answer's size."""
        limits = input_limits()
        beam = beam_size or self.default_beam
        decode_steps = beam * steps
        if decode_steps > limits.max_decode_steps:
            raise TooLarge(f"the call asks for {rows} sequences x beam {beam} x up to "
                           f"{steps // max(rows, 1)} steps = {decode_steps} decoder-step rows; "
                           f"this server runs at most {limits.max_decode_steps} per call "
                           "(--max-decode-steps)")
        memory = rows * beam * source_len * self.memory_width * 4
        if memory > limits.max_search_memory_bytes:
            raise TooLarge(f"the call's search would hold {memory} bytes of encoder memory "
                           f"({rows} x beam {beam} x {source_len} positions x "
                           f"{self.memory_width} floats); this server allows "
                           f"{limits.max_search_memory_bytes} (--max-search-memory-bytes)")
        # attention dominates the answer: one float per generated token and source position
        answer = steps * output_width * 4
        if answer > limits.max_response_bytes:
            raise TooLarge(f"the answer could reach {answer} bytes of attention, above the "
                           f"{limits.max_response_bytes}-byte message limit "
                           "(--max-message-bytes); send fewer or shorter inputs")

    def outputs(self, result: list[Any], names: list[str]) -> dict[str, np.ndarray]:
        tensors = self.result_tensors(result)
        return {name: tensors[name] for name in names}

    def result_tensors(self, results: list[Any]) -> dict[str, np.ndarray]:
        """One call's decoded sequences as every output tensor this model offers."""
        raise NotImplementedError

    def new_search(self, encoded: Encoded, max_lengths: np.ndarray, beam_size: int) -> Search:
        """The search of one call (beam 0: the model's default), not yet stepped."""
        return new_search(encoded, max_lengths, beam_size or self.default_beam,
                          self.decoding.length_penalty, self.bos_id, self.eos_id)

    def rows(self, sequences: int, beam_size: int) -> int:
        return sequences * (beam_size or self.default_beam)


def padded(rows: Sequence[Sequence[Any]], fill: Any, dtype: Any,
           width: int | None = None) -> np.ndarray:
    """Ragged rows -> one [len(rows), width] array, right-padded with fill (BYTES: object)."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = np.full((len(rows), width), fill, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def generated_tensors(results: Sequence[Any], ids: Sequence[Sequence[int]],
                      width: int) -> dict[str, np.ndarray]:
    """What every decoded sequence has, as padded tensors: its ids (-1 past the end), the
    probability of each, its score and whether it ended before its length limit."""
    return {"token_ids": padded(ids, -1, np.int64, width),
            "token_probabilities": padded([r.token_probabilities for r in results], 0.0,
                                          np.float32, width),
            "scores": np.array([r.score for r in results], np.float32),
            "finished": np.array([r.finished for r in results], np.bool_)}


def texts_tensor(texts: Sequence[str]) -> np.ndarray:
    """Strings -> a BYTES tensor of their UTF-8 encodings."""
    out = np.empty(len(texts), dtype=object)
    out[:] = [t.encode("utf-8") for t in texts]
    return out


def pieces_tensor(rows: Sequence[Sequence[str]], width: int | None = None) -> np.ndarray:
    """Ragged rows of strings -> a padded BYTES [rows, width] tensor (b"" past each end)."""
    return padded([[p.encode("utf-8") for p in row] for row in rows], b"", object, width)


def parse_search_options(parameters: dict[str, object]) -> dict[str, int]:
    """beam_size / max_length request parameters of the Open Inference Protocol."""
    options = {}
    for name in ("beam_size", "max_length"):
        if name in parameters:
            value = parameters[name]
            text = str(value)
            # isascii: isdigit() alone accepts digits such as '²' that int() refuses
            if isinstance(value, bool) or not isinstance(value, int | str) or \
                    not (text.isascii() and text.isdigit()) or int(text) > MAX_OPTION:
                raise InvalidInput(f"parameter {name} must be an integer in 0..{MAX_OPTION}")
            options[name] = int(text)
    if options.get("beam_size", 0) > MAX_BEAM_SIZE:
        raise InvalidInput(f"beam_size is at most {MAX_BEAM_SIZE}")
    return options
