"""The captioner's held-out scores: captions decoded through the exported graphs, corpus BLEU,
exact match, attention localisation on canvases, and the no-decoder baselines on photos."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from serving.decoding import Hypothesis
from training.caption_metrics import attention_localisation, corpus_bleu, exact_match
from training.data.captions import CaptionDataset, CaptionSplit, Vocabulary, tokenize
from training.export.caption_graphs import EncoderGraph, OnnxCaptioner, search
from training.export.decoder_step import torch_step
from training.loop import TrainResult

EVAL_BATCH = 256


@torch.no_grad()
def torch_decode(graph: EncoderGraph, images: np.ndarray, vocab: Vocabulary, max_length: int,
                 beam_size: int = 1) -> list[Hypothesis]:
    """Search over the PyTorch step on the CPU (the search code the server runs)."""
    graph = graph.cpu().eval()
    out: list[Hypothesis] = []
    step = torch_step(graph.model)
    for s in range(0, len(images), EVAL_BATCH):
        memory, state = graph(torch.from_numpy(images[s:s + EVAL_BATCH].astype(np.float32)))
        out += search(step, state.numpy(), memory.numpy(), vocab.bos_id, vocab.eos_id,
                      max_length, beam_size)
    return out


def caption_metrics(hyps: list[Hypothesis], split: CaptionSplit, vocab: Vocabulary,
                    grid: tuple[int, int]) -> dict[str, float]:
    words = [vocab.decode(h.tokens) for h in hyps]
    refs = [[tokenize(c) for c in r] for r in split.references]
    out = {**corpus_bleu(words, refs), "exact_match": exact_match(words, refs),
           "mean_length": float(np.mean([len(x) for x in words]))}
    if split.boxes is not None:
        # every generated token has an attention row, <bos>/<pad> ones too (which decode()
        # leaves out of the words), so localisation reads the tokens themselves
        tokens = [[vocab.tokens[i] for i in h.tokens] for h in hyps]
        out.update(attention_localisation(tokens, [h.attention for h in hyps],
                                          [r[0] for r in refs], split.boxes,
                                          split.images.shape[2:], grid))
    return out


def baselines(onnx_model: OnnxCaptioner, data: CaptionDataset,
              train: CaptionSplit) -> dict[str, Any]:
    """Captions without a decoder: the most frequent training caption for every image, and the
    first caption of the training image nearest in the encoder's mean feature (cosine)."""
    refs = [[tokenize(c) for c in r] for r in data.test.references]
    counts: dict[tuple[str, ...], int] = {}
    for r in train.references:
        for c in r:
            key = tuple(tokenize(c))
            counts[key] = counts.get(key, 0) + 1
    frequent = list(max(counts, key=lambda k: (counts[k], -len(k))))

    def features(images: np.ndarray) -> np.ndarray:
        f = np.concatenate([onnx_model.encode(images[s:s + EVAL_BATCH].astype(np.float32))[0]
                            .mean(axis=1) for s in range(0, len(images), EVAL_BATCH)])
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    nearest = (features(data.test.images) @ features(train.images).T).argmax(axis=1)
    neighbour = [tokenize(train.references[i][0]) for i in nearest]
    return {
        "most_frequent_caption": {"caption": " ".join(frequent),
                                  **corpus_bleu([frequent] * len(refs), refs)},
        "nearest_neighbour": corpus_bleu(neighbour, refs),
    }


def evaluate_exported(onnx_model: OnnxCaptioner, data: CaptionDataset, train: CaptionSplit,
                      vocab: Vocabulary, max_length: int, beam_size: int,
                      length_penalty: float, grid: tuple[int, int]) -> dict[str, Any]:
    test = data.test
    t0 = time.perf_counter()
    beam = onnx_model.decode(test.images, vocab.bos_id, vocab.eos_id, max_length, beam_size,
                             length_penalty)
    beam_seconds = time.perf_counter() - t0
    greedy = onnx_model.decode(test.images, vocab.bos_id, vocab.eos_id, max_length)
    metrics: dict[str, Any] = {
        "split": "test", "n_test": len(test),
        "references_per_image": float(np.mean([len(r) for r in test.references])),
        "decoding": f"beam {beam_size}, length penalty {length_penalty}",
        **caption_metrics(beam, test, vocab, grid),
        "greedy": caption_metrics(greedy, test, vocab, grid),
        "decode_seconds": round(beam_seconds, 3),
        "bleu": "corpus BLEU-1..4 (Papineni), all references, closest-reference brevity "
                "penalty, no smoothing, computed by training.caption_metrics; tokens: lower "
                "case, words [a-z0-9]+ (inner apostrophe kept), punctuation dropped",
        "attention_localisation_rule": "peak cell of each generated digit word inside that "
                                       "digit's box widened by one cell",
        "evaluated_with": "onnxruntime CPUExecutionProvider on the exported encoder.onnx + "
                          "decoder_step.onnx, search from serving.decoding",
        "examples": [{"caption": " ".join(vocab.decode(h.tokens)),
                      "references": test.references[i][:2]} for i, h in enumerate(beam[:5])],
    }
    if data.test.boxes is None:
        metrics["baselines"] = baselines(onnx_model, data, train)
    return metrics


def summary(m: dict[str, Any], result: TrainResult, parity: float) -> str:
    g = m["greedy"]
    lines = [f"test: {m['n_test']} held-out images through the exported graphs "
             f"(onnxruntime), {m['decoding']} | greedy",
             "  BLEU-1..4 " + " ".join(f"{m[f'bleu{n}']:.4f}" for n in range(1, 5))
             + " | " + " ".join(f"{g[f'bleu{n}']:.4f}" for n in range(1, 5)),
             f"  exact match {m['exact_match']:.4f} | {g['exact_match']:.4f}"]
    if "attention_localisation" in m:
        lines.append(f"  attention localisation {m['attention_localisation']:.4f} | "
                     f"{g['attention_localisation']:.4f} over "
                     f"{int(m['localisation_words'])} words")
    for name, b in m.get("baselines", {}).items():
        lines.append(f"  baseline {name}: BLEU-4 {b['bleu4']:.4f} BLEU-1 {b['bleu1']:.4f}")
    lines.append(f"  best epoch {result.best_epoch}/{result.epochs_run}; parity max |diff| "
                 f"{parity:.2e}; training {result.seconds:.0f}s")
    return "\n".join(lines)
