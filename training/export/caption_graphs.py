"""The two served graphs of a captioner and their parity gate.

encoder.onnx       pixels [B, C, H, W] raw 0..255   -> memory [B, cells, F], state [B, D]
decoder_step.onnx  prev_ids [B] int64, state [B, D], memory [B, cells, F], src_mask [B, cells]
                   -> log_probs [B, V], new_state [B, D], attention [B, cells]

Normalisation is inside the encoder graph, log_softmax inside the step, so the server only
resizes and searches. Parity compares every output of both graphs at several batch sizes, then
decodes held-out images greedily through onnxruntime and through PyTorch (the same search code,
serving.decoding, over each step) and requires identical tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serving.decoding import (
    Encoded,
    EncoderDecoder,
    Hypothesis,
    StepFn,
    caption_images,
    new_search,
    run_search,
)
from serving.repository import CaptionDecoding
from serving.repository.graph_io import (
    DECODER_STEP_FILE,
    ENCODER_FILE,
    ENCODER_OUTPUTS,
    IMAGE_ENCODER_INPUTS,
    LOG_PROBS,
    MEMORY,
    PIXELS,
    PREV_IDS,
    SRC_MASK,
    STATE,
    STEP_INPUTS,
    STEP_OUTPUTS,
)
from training.export.decoder_step import DecoderStepGraph, step_axes, torch_step
from training.export.onnx_export import export_onnx
from training.export.parity import (
    LOG_PROBS_RTOL,
    MEMORY_RTOL,
    PROVIDER,
    ParityError,
    SequenceParity,
    check_parity,
)
from training.models.captioner import Captioner

DECODER_FILE = DECODER_STEP_FILE
ENCODER_INPUTS = IMAGE_ENCODER_INPUTS
PARITY_TOLERANCE = 1e-5


class EncoderGraph(nn.Module):
    def __init__(self, model: Captioner, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels / 255.0 - self.mean) / self.std

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(self.normalise(pixels))


def export_caption_graphs(encoder: EncoderGraph, folder: Path) -> tuple[Path, Path]:
    model = encoder.model.eval()
    c = encoder.mean.shape[1]
    h, w = model.encoder.image_size
    pixels = torch.zeros((2, c, h, w))  # batch 2: a traced batch of 1 would be frozen
    memory, state = encoder(pixels)
    enc = export_onnx(encoder, (pixels,), folder / ENCODER_FILE, ENCODER_INPUTS,
                      ENCODER_OUTPUTS, {PIXELS: {0: "batch"}})
    step_inputs = (torch.ones(2, dtype=torch.int64), state, memory,
                   torch.ones(memory.shape[:2], dtype=torch.bool))
    inputs, outputs = step_axes({0: "batch"})
    dec = export_onnx(DecoderStepGraph(model), step_inputs, folder / DECODER_FILE, STEP_INPUTS,
                      STEP_OUTPUTS, inputs, output_axes=outputs)
    return enc, dec


class OnnxCaptioner:
    """An exported version decoded as the server decodes it (serving.decoding.caption_images)."""

    def __init__(self, folder: Path, provider: str = PROVIDER) -> None:
        self.graphs = EncoderDecoder.open(folder, [provider])

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        encoded = self.graphs.encode_images(pixels)
        return encoded.memory, encoded.state

    def decode(self, images: np.ndarray, bos_id: int, eos_id: int, max_length: int,
               beam_size: int = 1, length_penalty: float = 0.0,
               batch_size: int = 256) -> list[Hypothesis]:
        """uint8 or float images (N, C, H, W) at the graph's size -> one hypothesis each."""
        decoding = CaptionDecoding(default_beam_size=beam_size, length_penalty=length_penalty,
                                   max_length=max_length)
        return caption_images(self.graphs, images, bos_id, eos_id, decoding, batch_size)


def search(step: StepFn, state: np.ndarray, memory: np.ndarray, bos_id: int, eos_id: int,
           max_length: int, beam_size: int = 1,
           length_penalty: float = 0.0) -> list[Hypothesis]:
    """The server's search over any step (the PyTorch one, for parity and per-epoch scores)."""
    encoded = Encoded(memory, state, np.ones(memory.shape[:2], bool))
    limits = np.full(len(state), max_length, np.int64)
    return run_search(new_search(encoded, limits, beam_size, length_penalty, bos_id, eos_id),
                      step)


@dataclass
class CaptionParity(SequenceParity):
    @property
    def greedy_images(self) -> int:
        return self.greedy_inputs

    def manifest_entry(self) -> dict[str, Any]:
        return {**super().manifest_entry(),
                "greedy_tokens": {"images": self.greedy_inputs,
                                  "mismatches": self.greedy_mismatches,
                                  "compared": "serving.decoding's greedy search over the "
                                              "onnxruntime step vs over the PyTorch step"}}


def parity_batch_sizes(available: int, wanted: Sequence[int] = (1, 3, 7)) -> list[int]:
    """All the held-out rows at once, then the wanted smaller batches that fit: a test split
    of 5 images is checked at 5, 1 and 3, never at a size it cannot fill."""
    return list(dict.fromkeys([available, *(n for n in wanted if n <= available)]))


def check_caption_parity(encoder: EncoderGraph, folder: Path, images: np.ndarray, bos_id: int,
                         eos_id: int, max_length: int, vocab_size: int,
                         tolerance: float = PARITY_TOLERANCE,
                         greedy_images: int = 256) -> CaptionParity:
    """Raise ParityError unless both graphs agree within tolerance and greedy tokens match."""
    encoder = encoder.eval()
    model = encoder.model
    real = images[:64].astype(np.float32)
    edge = np.concatenate([np.zeros_like(real[:1]), np.full_like(real[:1], 255.0)])
    pixel_batches = [real, real[:1], real[:3], np.concatenate([real[:5], edge])]
    enc_report = check_parity(encoder, folder / ENCODER_FILE,
                              [{PIXELS: p} for p in pixel_batches], tolerance=tolerance,
                              relative_tolerance={MEMORY: MEMORY_RTOL})
    with torch.no_grad():
        memory, state = (t.numpy() for t in encoder(torch.from_numpy(real)))
    rng = np.random.default_rng(0)
    step_batches = []
    for n in parity_batch_sizes(len(real)):
        ids = rng.integers(0, vocab_size, n).astype(np.int64)
        ids[0] = bos_id
        # a later step's state too: one step in, rather than only the initial one
        with torch.no_grad():
            _, later, _ = model.step(torch.from_numpy(ids), torch.from_numpy(state[:n]),
                                     torch.from_numpy(memory[:n]),
                                     torch.ones(memory[:n].shape[:2], dtype=torch.bool))
        for s in (state[:n], later.numpy()):
            step_batches.append({PREV_IDS: ids, STATE: s, MEMORY: memory[:n],
                                 SRC_MASK: np.ones(memory[:n].shape[:2], bool)})
    dec_report = check_parity(DecoderStepGraph(model), folder / DECODER_FILE, step_batches,
                              tolerance=tolerance,
                              relative_tolerance={LOG_PROBS: LOG_PROBS_RTOL})
    onnx_model = OnnxCaptioner(folder)
    held_out = images[:greedy_images]
    got = onnx_model.decode(held_out, bos_id, eos_id, max_length)
    with torch.no_grad():
        m, s = (t.numpy() for t in encoder(torch.from_numpy(held_out.astype(np.float32))))
    expected = search(torch_step(model), s, m, bos_id, eos_id, max_length)
    mismatches = sum(g.tokens != e.tokens for g, e in zip(got, expected, strict=True))
    if mismatches:
        raise ParityError(f"greedy decoding through onnxruntime differs from PyTorch on "
                          f"{mismatches} of {len(held_out)} held-out images")
    return CaptionParity(enc_report, dec_report, len(held_out), mismatches)
