"""The two served graphs of a translation model and their parity gate.

encoder.onnx       src_ids int64 [B, S] (right-padded), src_lengths int64 [B]
                   -> memory float32 [B, S, M + K] (zero on padding), state float32 [B, D]
decoder_step.onnx  prev_ids int64 [B], state [B, D], memory [B, S, M + K], src_mask bool [B, S]
                   -> log_probs [B, V] (log_softmax), new_state [B, D], attention [B, S]

memory carries the attention's keys (K wide; none for dot attention) beside the encoder's
states, so each source's keys are computed once rather than at every step and for every beam
(Seq2Seq.served_memory). The server never looks inside it; versions exported before, with
M-wide memory and the keys computed in the step, are served the same way.

B and S are dynamic on every input. The server (serving.runners.translator) runs the encoder
once and greedy or beam search (serving.decoding) over the step.

Exporter: the legacy TorchScript exporter (dynamo=False). On torch 2.13 / onnxscript 0.7 the
dynamo exporter freezes the time axis of nn.GRU / nn.LSTM outputs at the example's length
(memory comes out typed [batch, 4, M]); the encoder then runs at that one source length only
and onnxruntime fails at any other ("Expand: invalid expand shape"), for GRU and LSTM alike.
The legacy exporter keeps both axes dynamic and matches PyTorch within 1e-6. It is also ~20x
faster to export. The choice is recorded in the manifest (parity.exporter); --exporter dynamo
stays available, and tests/training/test_translate_export.py shows it failing the gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
from torch import nn

from serving.decoding import EncoderDecoder, Hypothesis, length_batches, translate_ids
from serving.preprocess.tensors import pad_batch
from serving.repository import TranslationDecoding
from serving.repository.graph_io import (
    DECODER_STEP_FILE,
    ENCODER_FILE,
    ENCODER_OUTPUTS,
    LOG_PROBS,
    MEMORY,
    PREV_IDS,
    SRC_IDS,
    SRC_LENGTHS,
    SRC_MASK,
    STATE,
    STEP_INPUTS,
    STEP_OUTPUTS,
    TEXT_ENCODER_INPUTS,
)
from training.export.decoder_step import DecoderStepGraph, step_axes
from training.export.onnx_export import export_onnx
from training.export.parity import (
    LOG_PROBS_RTOL,
    PROVIDER,
    ParityError,
    SequenceParity,
    check_parity,
)
from training.models.seq2seq import Seq2Seq

DECODER_FILE = DECODER_STEP_FILE
ENCODER_INPUTS = TEXT_ENCODER_INPUTS
DEFAULT_EXPORTER = "legacy"
PARITY_TOLERANCE = 1e-5
ORT_ERRORS = (ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.RuntimeException)
# the server's defaults (serving.repository.TranslationDecoding), for the option defaults here
SERVED = TranslationDecoding()


class EncoderGraph(nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor,
                src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory, _, state = self.model.encode(src_ids, src_lengths)
        return self.model.served_memory(memory), state


def export_translation_graphs(model: Seq2Seq, folder: Path,
                              exporter: str = DEFAULT_EXPORTER) -> tuple[Path, Path]:
    model = model.eval()
    # batch 2, unequal lengths of 3+: the exporter would freeze an axis traced at size 0 or 1
    src = torch.tensor([[5, 6, 7, 3], [5, 3, 0, 0]], dtype=torch.int64)
    lengths = torch.tensor([4, 2], dtype=torch.int64)
    encoder = EncoderGraph(model)
    with torch.no_grad():
        memory, state = encoder(src, lengths)
    batch_and_length = {0: "batch", 1: "src_len"}
    enc = export_onnx(encoder, (src, lengths), folder / ENCODER_FILE, ENCODER_INPUTS,
                      ENCODER_OUTPUTS, {SRC_IDS: batch_and_length, SRC_LENGTHS: {0: "batch"}},
                      exporter=exporter,
                      output_axes={MEMORY: batch_and_length, STATE: {0: "batch"}})
    step_inputs = (torch.tensor([2, 2], dtype=torch.int64), state, memory, lengths.new_tensor(
        [[True, True, True, True], [True, True, False, False]], dtype=torch.bool))
    inputs, outputs = step_axes(batch_and_length)
    dec = export_onnx(DecoderStepGraph(model, model.served_step), step_inputs,
                      folder / DECODER_FILE, STEP_INPUTS, STEP_OUTPUTS, inputs,
                      exporter=exporter, output_axes=outputs)
    return enc, dec


def max_target_lengths(source_lengths: np.ndarray, ratio: float = SERVED.max_length_ratio,
                       offset: int = SERVED.max_length_offset) -> np.ndarray:
    """The server's limit per source (pieces, EOS included)."""
    decoding = TranslationDecoding(max_length_ratio=ratio, max_length_offset=offset)
    return np.array([decoding.max_target_length(int(n)) for n in np.asarray(source_lengths)],
                    np.int64)


@dataclass(frozen=True)
class SearchOptions:
    """A search as training asks for it; `decoding` is the same as the manifest section the
    server decodes with."""

    beam_size: int = 1
    length_penalty: float = 0.0
    max_length_ratio: float = SERVED.max_length_ratio
    max_length_offset: int = SERVED.max_length_offset

    @property
    def decoding(self) -> TranslationDecoding:
        return TranslationDecoding(default_beam_size=self.beam_size,
                                   length_penalty=self.length_penalty,
                                   max_length_ratio=self.max_length_ratio,
                                   max_length_offset=self.max_length_offset)


class OnnxTranslator:
    """An exported version decoded as the server decodes it (serving.decoding.translate_ids)."""

    def __init__(self, folder: Path, pad_id: int, bos_id: int, eos_id: int,
                 provider: str = PROVIDER, threads: int | None = None) -> None:
        # as many threads as PyTorch was given: a decoder step is too small to gain from
        # more, and on a busy machine spinning threads cost more than they bring
        self.graphs = EncoderDecoder.open(folder, [provider], threads or torch.get_num_threads())
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    def translate_ids(self, sources: Sequence[Sequence[int]], options: SearchOptions,
                      batch_size: int = 64) -> list[Hypothesis]:
        """Source id lists (EOS included) -> one hypothesis each, in the given order."""
        return translate_ids(self.graphs, sources, self.pad_id, self.bos_id, self.eos_id,
                             options.decoding, batch_size)


@torch.no_grad()
def greedy_torch(model: Seq2Seq, sources: Sequence[Sequence[int]], pad_id: int, bos_id: int,
                 eos_id: int, max_length_ratio: float = SERVED.max_length_ratio,
                 max_length_offset: int = SERVED.max_length_offset,
                 batch_size: int = 128) -> list[list[int]]:
    """Greedy decoding in PyTorch alone (no serving code): the reference the exported graphs
    and the server's search must reproduce, and the per-epoch dev decoder."""
    model.eval()
    device = next(model.parameters()).device
    results: list[list[int]] = [[] for _ in sources]
    for chunk in length_batches([len(s) for s in sources], batch_size):
        src, lengths = (torch.from_numpy(a).to(device)
                        for a in pad_batch([sources[i] for i in chunk], pad_id))
        memory, mask, state = model.encode(src, lengths)
        limits = torch.from_numpy(max_target_lengths(lengths.cpu().numpy(), max_length_ratio,
                                                     max_length_offset)).to(device)
        prev = torch.full((len(chunk),), bos_id, dtype=torch.int64, device=device)
        done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        tokens = []
        for t in range(int(limits.max())):
            logits, state, _ = model.step(prev, state, memory, mask)
            prev = logits.argmax(dim=-1)
            tokens.append(prev)
            done |= (prev == eos_id) | (t + 1 >= limits)
            if bool(done.all()):
                break
        steps = torch.stack(tokens, 1).cpu().tolist()
        for row, i in enumerate(chunk):
            seq = steps[row][:int(limits[row])]
            results[i] = seq[:seq.index(eos_id)] if eos_id in seq else seq
    return results


@dataclass
class TranslationParity(SequenceParity):
    exporter: str = DEFAULT_EXPORTER

    @property
    def greedy_sentences(self) -> int:
        return self.greedy_inputs

    def manifest_entry(self) -> dict[str, Any]:
        return {**super().manifest_entry(), "exporter": self.exporter,
                "greedy_tokens": {"sentences": self.greedy_inputs,
                                  "mismatches": self.greedy_mismatches,
                                  "compared": "serving.decoding.translate_ids (greedy) over "
                                              "the onnxruntime graphs vs a PyTorch-only "
                                              "greedy decoder over the model"}}


def _encoder_batches(sources: Sequence[Sequence[int]],
                     pad_id: int) -> list[dict[str, np.ndarray]]:
    """Several batch sizes and source lengths, incl. one long sentence padding short ones."""
    by_length = sorted(sources, key=len)
    shortest, longest = by_length[0], by_length[-1]
    groups = [sources[:1], [longest], sources[:3], sources[:8] + [longest],
              [shortest, longest, shortest], sources[:32]]
    batches = []
    for group in groups:
        src, lengths = pad_batch(group, pad_id)
        batches.append({SRC_IDS: src, SRC_LENGTHS: lengths})
    return batches


def check_translation_parity(model: Seq2Seq, folder: Path, sources: Sequence[Sequence[int]],
                             pad_id: int, bos_id: int, eos_id: int, exporter: str,
                             tolerance: float = PARITY_TOLERANCE,
                             greedy_sentences: int = 200,
                             max_length_ratio: float = SERVED.max_length_ratio,
                             max_length_offset: int = SERVED.max_length_offset
                             ) -> TranslationParity:
    """Raise ParityError unless both graphs agree within tolerance on every output at several
    batch sizes and source lengths, and greedy decodes of held-out sentences through
    onnxruntime give exactly the PyTorch tokens."""
    try:
        return _check_translation_parity(model, folder, sources, pad_id, bos_id, eos_id,
                                         exporter, tolerance, greedy_sentences,
                                         max_length_ratio, max_length_offset)
    except ORT_ERRORS as e:
        raise ParityError(f"onnxruntime cannot run the exported graphs in {folder} "
                          f"(exporter {exporter}): {e}") from e


def _check_translation_parity(model: Seq2Seq, folder: Path, sources: Sequence[Sequence[int]],
                              pad_id: int, bos_id: int, eos_id: int, exporter: str,
                              tolerance: float, greedy_sentences: int, max_length_ratio: float,
                              max_length_offset: int) -> TranslationParity:
    model = model.eval()
    encoder = EncoderGraph(model)
    enc_batches = _encoder_batches(sources, pad_id)
    enc_report = check_parity(encoder, folder / ENCODER_FILE, enc_batches, tolerance=tolerance)
    rng = np.random.default_rng(0)
    step_batches = []
    for batch in enc_batches:
        with torch.no_grad():
            src, lengths = torch.from_numpy(batch[SRC_IDS]), torch.from_numpy(
                batch[SRC_LENGTHS])
            memory, mask, state = model.encode(src, lengths)
            ids = torch.from_numpy(rng.integers(4, model.cfg.target_vocab, len(src)))
            ids[0] = bos_id
            # a later state as well as the initial one: two steps in
            later = state
            for _ in range(2):
                _, later, _ = model.step(ids, later, memory, mask)
            served = model.served_memory(memory)
        for s in (state, later):
            step_batches.append({PREV_IDS: ids.numpy(), STATE: s.numpy(),
                                 MEMORY: served.numpy(), SRC_MASK: mask.numpy()})
    dec_report = check_parity(DecoderStepGraph(model, model.served_step),
                              folder / DECODER_FILE, step_batches,
                              tolerance=tolerance,
                              relative_tolerance={LOG_PROBS: LOG_PROBS_RTOL})
    held_out = list(sources[:greedy_sentences])
    options = SearchOptions(1, 0.0, max_length_ratio, max_length_offset)
    got = OnnxTranslator(folder, pad_id, bos_id, eos_id).translate_ids(held_out, options)
    expected = greedy_torch(model, held_out, pad_id, bos_id, eos_id, max_length_ratio,
                            max_length_offset)
    mismatches = sum(g.tokens != e for g, e in zip(got, expected, strict=True))
    if mismatches:
        raise ParityError(f"greedy decoding through onnxruntime differs from PyTorch on "
                          f"{mismatches} of {len(held_out)} held-out sentences")
    return TranslationParity(enc_report, dec_report, len(held_out), mismatches, exporter)
