"""In-process PyTorch eager vs onnxruntime on the same models, side by side.

Image models (MNIST classifiers, the multi-label tagger) at batch 1 / 32 / 256: the exported
graph as a torch module vs its ONNX file. Sequence models: a full greedy decode, PyTorch's own
step loop (encode, then step + argmax in torch) vs the exported encoder.onnx + decoder_step.onnx
driven by serving.decoding.greedy_decode, the search the server runs. Both runtimes get the
same thread count; onnxruntime sessions take the server's options (serving.runtime.session).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import models
from serving.decoding import greedy_decode
from serving.preprocess.tensors import pad_batch
from serving.runtime.session import SessionConfig, create_session
from training.export.classifier_graph import INPUT_NAME
from training.timing import interleaved
from training.tokenizer import BOS_ID, EOS_ID, PAD_ID

IMAGE_BATCHES = (1, 32, 256)
DECODE_BATCHES = (1, 32)
TRANSLATION_STEPS = 20  # target pieces per sentence, every sentence (EOS is suppressed)
CAPTION_STEPS = 12  # words per caption: the multi-digit captioner's max_length


def session(path: Path, threads: int) -> Any:
    return create_session(path, ["CPUExecutionProvider"],
                          SessionConfig(intra_op_threads=threads))[0]


def _row(model: str, what: str, batch: int, threads: int,
         eager: Callable[[], object], onnx: Callable[[], object],
         repeats: int) -> dict[str, Any]:
    t = interleaved({"eager": eager, "onnxruntime": onnx}, repeats)
    e, o = t["eager"].median_ms, t["onnxruntime"].median_ms
    return {"benchmark": "eager_vs_onnxruntime", "model": model, "work": what, "batch": batch,
            "threads": threads, "eager_ms": round(e, 3), "onnxruntime_ms": round(o, 3),
            "speedup": round(e / o, 2)}


def image_rows(name: str, graph: torch.nn.Module, shape: tuple[int, int, int], folder: Path,
               threads: int, quick: bool,
               batches: tuple[int, ...] = IMAGE_BATCHES) -> list[dict[str, Any]]:
    sess = session(models.export_image_graph(graph, shape, folder / f"{name}.onnx"), threads)

    def eager(x: torch.Tensor) -> object:
        with torch.inference_mode():
            return graph(x)

    rows = []
    for batch in batches:
        x = models.images(shape, batch)
        repeats = (15 if quick else 100) if batch < 256 else (5 if quick else 30)
        rows.append(_row(name, "forward", batch, threads, partial(eager, torch.from_numpy(x)),
                         partial(sess.run, None, {INPUT_NAME: x}), repeats))
    return rows


@torch.inference_mode()
def eager_greedy(encode: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                 step: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                 bos_id: int, steps: int) -> np.ndarray:
    """Greedy decoding as the model runs in PyTorch: encode once, then `steps` step + argmax."""
    memory, mask, state = encode()
    prev = torch.full((memory.shape[0],), bos_id, dtype=torch.int64)
    tokens = []
    for _ in range(steps):
        logits, state, _ = step(prev, state, memory, mask)
        prev = logits.argmax(dim=-1)
        tokens.append(prev)
    return torch.stack(tokens, 1).numpy()


def onnx_greedy(encoder: Any, decoder: Any, feeds: dict[str, np.ndarray], mask: np.ndarray,
                bos_id: int, eos_id: int, steps: int) -> list[list[int]]:
    """The server's decode: encoder.onnx once, serving.decoding.greedy_decode over the step."""
    memory, state = encoder.run(["memory", "state"], feeds)

    def step(prev: np.ndarray, state: np.ndarray, memory: np.ndarray,
             mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = decoder.run(["log_probs", "new_state", "attention"],
                          {"prev_ids": prev, "state": state, "memory": memory, "src_mask": mask})
        return out[0], out[1], out[2]

    hyps = greedy_decode(step, state, memory, mask, bos_id, eos_id,
                         np.full(len(mask), steps, np.int64))
    return [h.tokens for h in hyps]


def translation_rows(folder: Path, threads: int, quick: bool,
                     batches: tuple[int, ...] = DECODE_BATCHES,
                     t: models.Translation | None = None) -> list[dict[str, Any]]:
    t = t or models.translation()
    models.publish_translation(folder, t)
    version = folder / "bench-translate" / "1"
    encoder, decoder = (session(version / f, threads)
                        for f in ("encoder.onnx", "decoder_step.onnx"))
    name = f"translate ({t.model.cfg.rnn}, {t.tokenizer.target_vocab_size} pieces)"
    rows = []
    for batch in batches:
        src, lengths = pad_batch(t.tokenizer.encode_source(t.sentences(batch, seed=batch)),
                                 PAD_ID)
        mask = np.arange(src.shape[1])[None, :] < lengths[:, None]
        src_t, len_t = torch.from_numpy(src), torch.from_numpy(lengths)
        # PyTorch computes the attention keys once per source too, as the exported graphs do
        eager = partial(eager_greedy, partial(_served_encode, t.model, src_t, len_t),
                        t.model.served_step, BOS_ID, TRANSLATION_STEPS)
        onnx = partial(onnx_greedy, encoder, decoder, {"src_ids": src, "src_lengths": lengths},
                       mask, BOS_ID, EOS_ID, TRANSLATION_STEPS)
        row = _row(name, f"greedy decode, {TRANSLATION_STEPS} steps",
                   batch, threads, eager, onnx, (3 if quick else 15))
        row["same_tokens"] = _agreement(eager(), onnx())
        rows.append(row)
    return rows


def _served_encode(model: Any, src: torch.Tensor,
                   lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    memory, mask, state = model.encode(src, lengths)
    return model.served_memory(memory), mask, state


def caption_rows(folder: Path, threads: int, quick: bool,
                 batches: tuple[int, ...] = DECODE_BATCHES,
                 graph: torch.nn.Module | None = None) -> list[dict[str, Any]]:
    graph = graph or models.captioner()
    enc_path, dec_path = models.export_captioner(graph, folder)
    encoder, decoder = session(enc_path, threads), session(dec_path, threads)
    shape = (graph.mean.shape[1], *graph.model.encoder.image_size)
    grid_rows, grid_cols = graph.model.grid
    rows = []
    for batch in batches:
        pixels = models.images(shape, batch)
        eager = partial(eager_greedy, partial(_caption_encode, graph, torch.from_numpy(pixels)),
                        graph.model.step, models.CAPTION_BOS, CAPTION_STEPS)
        cells = np.ones((batch, grid_rows * grid_cols), bool)
        onnx = partial(onnx_greedy, encoder, decoder, {"pixels": pixels}, cells,
                       models.CAPTION_BOS, models.CAPTION_EOS, CAPTION_STEPS)
        row = _row(f"caption (lstm, {grid_rows}x{grid_cols} grid)",
                   f"greedy decode, {CAPTION_STEPS} steps", batch, threads, eager, onnx,
                   (5 if quick else 20))
        row["same_tokens"] = _agreement(eager(), onnx())
        rows.append(row)
    return rows


def _caption_encode(graph: torch.nn.Module,
                    pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    memory, state = graph(pixels)
    return memory, torch.ones(memory.shape[:2], dtype=torch.bool), state


def _agreement(eager: np.ndarray, onnx: list[list[int]]) -> float:
    """Share of sentences whose greedy tokens agree: a check that both decode the same thing."""
    return round(float(np.mean([list(e) == o for e, o in zip(eager, onnx, strict=True)])), 3)


def run(quick: bool = False, threads: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """threads: the thread counts to compare at (both runtimes get the same). Default: 1 in a
    quick run (on a shared two-core machine more threads measure the neighbours), else 1 and
    every core."""
    cores = os.cpu_count() or 1
    threads = threads or ((1,) if quick else tuple(sorted({1, cores})))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in threads:
            torch.set_num_threads(n)
            for arch in ("softmax", "mlp", "cnn"):
                rows += image_rows(f"mnist-{arch}", models.classifier_graph(arch),
                                   models.MNIST_SHAPE, folder, n, quick)
            rows += image_rows("tagger-cnn", models.tagger_graph("cnn"), models.TAGGER_SHAPE,
                               folder, n, quick)
            rows += translation_rows(folder / f"t{n}", n, quick)
            rows += caption_rows(folder, n, quick)
    return rows
