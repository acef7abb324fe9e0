"""Attention image captioning (Show, Attend and Tell): a CNN feature grid is the memory an LSTM
decoder attends over, one word at a time; each word comes with where in the image it looked.

Data (--dataset):
  multidigit  canvases of 1-4 real MNIST digits (the tagger's generator), captioned with the
              digits' words left to right ("three seven one"); digits from an MNIST IDX folder
              (--data-dir) or the bundled 5,000; the digit boxes score the attention.
  folder      photos: --data-dir holds them, --captions a CSV image,caption (several rows per
              image allowed; default DATA_DIR/captions.csv). Split by image with a fixed seed.

Training: teacher forcing, cross-entropy per word, plus --attention-reg times the doubly
stochastic attention penalty; early stopping on the validation cross-entropy. Export:
encoder.onnx + decoder_step.onnx, checked output by output (1e-5) and by greedy tokens against
PyTorch. The held-out test split is then captioned through the exported graphs in onnxruntime
(beam search at the default beam and greedy): corpus BLEU-1..4 against all references, exact
match, and on canvases the attention localisation.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serving.decoding import Hypothesis
from training.batching import ShuffledBatches
from training.caption_metrics import attention_localisation, corpus_bleu, exact_match
from training.data.captions import (
    CaptionDataset,
    CaptionSplit,
    Vocabulary,
    canvas_split,
    load_caption_folder,
    tokenize,
)
from training.data.idx import DataError
from training.data.mnist import load_mnist
from training.data.multidigit import (
    CANVAS_SEED,
    MAX_DIGITS,
    MAX_OVERLAP,
    MIN_DIGITS,
    make_multidigit,
)
from training.distributed import finish_training
from training.export.caption_graphs import (
    DECODER_FILE,
    ENCODER_FILE,
    PARITY_TOLERANCE,
    EncoderGraph,
    OnnxCaptioner,
    check_caption_parity,
    export_caption_graphs,
    search,
)
from training.export.decoder_step import torch_step
from training.loop import StepOutput, TrainResult, fit
from training.models.captioner import Captioner, caption_loss, doubly_stochastic_penalty
from training.outputs import claimed_outputs, staged_version
from training.seeding import seed_everything
from training.tasks.common import (
    add_common_arguments,
    build_optimizer,
    build_penalty,
    build_scheduler,
    jsonable_config,
    library_versions,
    non_empty_int_list,
    non_negative_float,
    non_negative_int,
    positive_int,
    resolve_device,
    split_fraction,
    train_config,
    unit_interval,
)

HELP = "attention image captioner (multi-digit canvases or photos with captions)"
DATASETS = ("multidigit", "folder")
DEFAULT_NAMES = {"multidigit": "caption-multidigit", "folder": "caption-photos"}
VOCAB_FILE = "vocab.txt"
EVAL_BATCH = 256
VAL_DECODE = 500  # validation images decoded greedily after each epoch

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # 64x64 canvases, 3 halvings -> an 8x8 grid of 8-pixel cells; a digit spans 2-4 cells.
    # The penalty defaults to 0 here: a one-digit caption has 2 steps for 64 cells, so asking
    # every cell for a total weight near 1 would pull attention off the digit.
    "multidigit": {"epochs": 10, "optimizer": "adam", "lr": 2e-3, "batch_size": 64,
                   "dropout": 0.1, "channels": [16, 32, 64], "feature_dim": 64,
                   "hidden": 128, "attention_reg": 0.0, "max_length": 12, "image_size": 64},
    # photos at 128 px, 4 halvings -> 8x8 grid; Xu et al.'s penalty weight of 1
    "folder": {"epochs": 30, "optimizer": "adam", "lr": 1e-3, "batch_size": 32,
               "dropout": 0.3, "channels": [32, 64, 128, 128], "feature_dim": 128,
               "hidden": 256, "attention_reg": 1.0, "max_length": 20, "image_size": 128},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    # per-step outputs are held to 1e-5, stricter than the single-graph tasks
    parser.set_defaults(parity_tolerance=PARITY_TOLERANCE)
    model = parser.add_argument_group(
        "model", "Unset options take per-dataset defaults: " + "; ".join(
            f"{name}: " + ", ".join(f"{k}={v}" for k, v in d.items())
            for name, d in DATASET_DEFAULTS.items()))
    model.add_argument("--channels", type=non_empty_int_list, default=None, metavar="N,N,...",
                       help="conv stages of the encoder, each halving the image; the grid is "
                            "image size / 2**stages")
    model.add_argument("--feature-dim", type=positive_int, default=None,
                       help="channels of a grid cell (the attention memory)")
    model.add_argument("--embed-dim", type=positive_int, default=32,
                       help="word embedding size (default: %(default)s)")
    model.add_argument("--hidden", type=positive_int, default=None, help="LSTM hidden size")
    model.add_argument("--attention-dim", type=positive_int, default=64,
                       help="additive attention size (default: %(default)s)")
    model.add_argument("--attention-reg", type=non_negative_float, default=None,
                       help="weight of the doubly stochastic attention penalty "
                            "sum_cells (1 - sum_t alpha)^2 per image, relative to the "
                            "cross-entropy summed over the caption as in Xu et al.")
    dec = parser.add_argument_group("decoding")
    dec.add_argument("--max-length", type=positive_int, default=None,
                     help="words per caption: training captions are cut here, search stops "
                          "here (manifest decoding.max_length)")
    dec.add_argument("--beam-size", type=positive_int, default=3,
                     help="beam of the test figures and the served default (default: "
                          "%(default)s)")
    dec.add_argument("--length-penalty", type=non_negative_float, default=0.0,
                     help="GNMT alpha for beam search (default: %(default)s)")

    data = parser.add_argument_group(
        "data", "--data-dir: for multidigit an MNIST IDX folder (default: the bundled digits); "
        "for folder the images named by the captions CSV")
    data.add_argument("--dataset", choices=DATASETS, default="multidigit",
                      help="(default: %(default)s)")
    data.add_argument("--captions", type=Path, default=None,
                      help="folder: the image,caption CSV (default: DATA_DIR/captions.csv)")
    data.add_argument("--image-size", type=positive_int, default=None,
                      help="folder: photos are resized to this square size; multidigit: the "
                           "canvas side")
    data.add_argument("--min-count", type=positive_int, default=None,
                      help="words seen fewer times in the training captions become <unk> "
                           "(default: 1 for multidigit, 3 for folder)")
    data.add_argument("--limit-train", type=positive_int, default=None, metavar="N",
                      help="train on the first N training images only (quick runs)")
    data.add_argument("--val-fraction", type=split_fraction, default=0.1,
                      help="(default: %(default)s)")
    data.add_argument("--test-fraction", type=split_fraction, default=0.15,
                      help="(default: %(default)s)")
    canvas = parser.add_argument_group("multidigit canvases")
    canvas.add_argument("--min-digits", type=positive_int, default=MIN_DIGITS,
                        help="(default: %(default)s)")
    canvas.add_argument("--max-digits", type=positive_int, default=MAX_DIGITS,
                        help="(default: %(default)s)")
    canvas.add_argument("--max-overlap", type=unit_interval, default=MAX_OVERLAP,
                        help="(default: %(default)s)")
    canvas.add_argument("--train-canvases", type=positive_int, default=20000,
                        help="(default: %(default)s)")
    canvas.add_argument("--val-canvases", type=positive_int, default=1000,
                        help="(default: %(default)s)")
    canvas.add_argument("--test-canvases", type=positive_int, default=2000,
                        help="(default: %(default)s)")
    canvas.add_argument("--canvas-seed", type=non_negative_int, default=CANVAS_SEED,
                        help="seed of the canvases, separate from --seed "
                             "(default: %(default)s)")


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    resolved = argparse.Namespace(**vars(args))
    for key, value in DATASET_DEFAULTS[args.dataset].items():
        if getattr(resolved, key, None) is None:
            setattr(resolved, key, value)
    if resolved.min_count is None:
        resolved.min_count = 1 if args.dataset == "multidigit" else 3
    if resolved.grad_clip is None:
        resolved.grad_clip = 5.0  # LSTMs: one exploding batch should not undo an epoch
    if resolved.name is None:
        resolved.name = DEFAULT_NAMES[args.dataset]
    if resolved.checkpoint_dir is None:
        resolved.checkpoint_dir = Path("runs") / resolved.name
    return resolved


def load_data(args: argparse.Namespace) -> CaptionDataset:
    if args.dataset == "folder":
        if args.data_dir is None:
            raise DataError("--dataset folder needs --data-dir (the images) and a captions CSV")
        return load_caption_folder(args.data_dir, args.captions, args.image_size,
                                   args.val_fraction, args.test_fraction)
    digits = load_mnist(args.data_dir)
    data = make_multidigit(
        digits, (args.train_canvases, args.val_canvases, args.test_canvases),
        seed=args.canvas_seed, canvas_size=args.image_size, min_digits=args.min_digits,
        max_digits=args.max_digits, max_overlap=args.max_overlap)
    return CaptionDataset(canvas_split(data.train), canvas_split(data.validation),
                          canvas_split(data.test), "grayscale",
                          f"multi-digit canvases from {digits.source}", dict(data.settings))


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) training pixels scaled to [0, 1]."""
    x = images.astype(np.float32) / 255.0
    mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    return [float(m) for m in mean], [float(s) if s > 0 else 1.0 for s in std]


def run(args: argparse.Namespace) -> int:
    args = resolve_defaults(args)
    with claimed_outputs(args.repository, args.checkpoint_dir):
        return train_and_publish(args)


def train_and_publish(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    seed_everything(args.seed)
    device = resolve_device(args.device)
    args.device_used = str(device)
    data = load_data(args)
    train = data.train.head(args.limit_train) if args.limit_train else data.train
    vocab = Vocabulary.build((c for refs in train.references for c in refs), args.min_count)
    mean, std = channel_statistics(train.images)
    c, h, w = data.image_shape
    model = Captioner(c, (h, w), len(vocab), args.channels, args.feature_dim, args.embed_dim,
                      args.hidden, args.attention_dim, args.dropout)
    print(f"captioner on {data.source}: {len(train)} train / {len(data.validation)} validation "
          f"/ {len(data.test)} test images of {data.image_shape}, {len(vocab)} words, grid "
          f"{model.grid[0]}x{model.grid[1]}; device {device}, seed {args.seed}")
    graph = EncoderGraph(model, mean, std).to(device)
    result = train_captioner(graph, train, data.validation, vocab, args, device)
    if not finish_training().is_main:
        return 0  # under torchrun rank 0 alone evaluates, exports and publishes
    graph = graph.cpu().eval()

    with staged_version(args.repository, args.name) as writer:
        export_caption_graphs(graph, writer.path)
        vocab.write(writer.path / VOCAB_FILE)
        parity = check_caption_parity(graph, writer.path, data.test.images, vocab.bos_id,
                                      vocab.eos_id, args.max_length, len(vocab),
                                      tolerance=args.parity_tolerance)
        metrics = evaluate_exported(OnnxCaptioner(writer.path), data, train, vocab, args,
                                    model.grid)
        manifest = build_manifest(args, data, train, vocab, mean, std, model, result, parity,
                                  metrics, time.perf_counter() - started)
        version, _ = writer.commit(manifest)

    print(f"published {Path(args.repository) / args.name / str(version)}")
    print(summary(metrics, result, parity.max_abs_diff))
    return 0


def train_captioner(graph: EncoderGraph, train: CaptionSplit, validation: CaptionSplit,
                    vocab: Vocabulary, args: argparse.Namespace,
                    device: torch.device) -> TrainResult:
    model: Captioner = graph.model
    images = torch.from_numpy(train.images).to(device)
    index, captions = train.pairs()
    pairs = (torch.from_numpy(index).to(device),
             torch.from_numpy(vocab.targets(captions, args.max_length)).to(device))
    val_images = torch.from_numpy(validation.images).to(device)
    v_index, v_captions = validation.pairs()
    v_targets = torch.from_numpy(vocab.targets(v_captions, args.max_length)).to(device)
    v_index_t = torch.from_numpy(v_index).to(device)
    val_refs = [[tokenize(c) for c in refs] for refs in validation.references[:VAL_DECODE]]

    def step(graph: EncoderGraph, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        idx, tokens = batch
        logits, attention = model(graph.normalise(images[idx].float()), tokens)
        ce, _ = caption_loss(logits, tokens[:, 1:], vocab.pad_id)
        loss = ce
        if args.attention_reg:
            valid = tokens[:, 1:] != vocab.pad_id
            # Xu et al. add the penalty to cross-entropy SUMMED over a caption's words; ce here
            # is a per-word mean, so the penalty is divided by the mean caption length to keep
            # their balance (undivided, it outweighed ce ~5x and pinned attention to uniform)
            words = valid.sum(dim=1).float().mean()
            loss = loss + args.attention_reg * doubly_stochastic_penalty(attention, valid) / words
        return StepOutput(loss, len(idx), {"ce": ce.item() * len(idx)})

    def evaluate(graph: EncoderGraph) -> dict[str, float]:
        total, count = 0.0, 0
        for s in range(0, len(v_targets), EVAL_BATCH):
            tokens, idx = v_targets[s:s + EVAL_BATCH], v_index_t[s:s + EVAL_BATCH]
            logits, _ = model(graph.normalise(val_images[idx].float()), tokens)
            ce, n = caption_loss(logits, tokens[:, 1:], vocab.pad_id)
            total, count = total + ce.item() * n, count + n
        words = [vocab.decode(h.tokens) for h in
                 torch_decode(graph, validation.images[:VAL_DECODE], vocab, args.max_length)]
        graph.to(device)
        return {"loss": total / count, "exact": exact_match(words, val_refs),
                "bleu4": corpus_bleu(words, val_refs)["bleu4"]}

    optimizer = build_optimizer(args.optimizer, graph.parameters(), args.lr, args.momentum)
    return fit(
        graph, step, ShuffledBatches(pairs, args.batch_size, args.seed), evaluate, optimizer,
        train_config(args),
        scheduler=build_scheduler(args.lr_schedule, optimizer, args.epochs),
        penalty=build_penalty(args),
    )


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


def baselines(onnx_model: OnnxCaptioner, data: CaptionDataset, train: CaptionSplit,
              vocab: Vocabulary) -> dict[str, Any]:
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
                      vocab: Vocabulary, args: argparse.Namespace,
                      grid: tuple[int, int]) -> dict[str, Any]:
    test = data.test
    t0 = time.perf_counter()
    beam = onnx_model.decode(test.images, vocab.bos_id, vocab.eos_id, args.max_length,
                             args.beam_size, args.length_penalty)
    beam_seconds = time.perf_counter() - t0
    greedy = onnx_model.decode(test.images, vocab.bos_id, vocab.eos_id, args.max_length)
    metrics: dict[str, Any] = {
        "split": "test", "n_test": len(test),
        "references_per_image": float(np.mean([len(r) for r in test.references])),
        "decoding": f"beam {args.beam_size}, length penalty {args.length_penalty}",
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
        metrics["baselines"] = baselines(onnx_model, data, train, vocab)
    return metrics


def build_manifest(args: argparse.Namespace, data: CaptionDataset, train: CaptionSplit,
                   vocab: Vocabulary, mean: list[float], std: list[float], model: Captioner,
                   result: TrainResult, parity: Any, metrics: dict[str, Any],
                   wall_seconds: float) -> dict[str, Any]:
    c, h, w = data.image_shape
    rows, cols = model.grid
    training = {
        **jsonable_config(args), "task": "caption",
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early, "train_seconds": round(result.seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"source": data.source, "train": len(train),
                 "train_captions": sum(len(r) for r in train.references),
                 "validation": len(data.validation), "test": len(data.test), **data.details},
        "distributed": result.world.manifest_entry(),
        "history": [asdict(r) for r in result.history],
    }
    return {
        "task": "caption",
        "graphs": {"encoder": ENCODER_FILE, "decoder_step": DECODER_FILE},
        "inputs": [{"name": "pixels", "dtype": "float32", "shape": [-1, c, h, w]}],
        "outputs": [{"name": "caption", "dtype": "bytes", "shape": [-1]},
                    {"name": "attention", "dtype": "float32", "shape": [-1, -1, rows, cols]}],
        "preprocessing": {
            "kind": "image", "color": data.color, "channels": c, "height": h, "width": w,
            "layout": "NCHW", "input_range": [0, 255], "resize": "bilinear",
            "normalization": {"mean": mean, "std": std, "applied_in_graph": True},
            **({"background": "black"} if data.color == "grayscale" else {}),
        },
        "grid": {"rows": rows, "cols": cols, "cell_height": h // rows, "cell_width": w // cols,
                 "order": "row-major", "feature_dim": model.encoder.feature_dim,
                 "state_dim": model.state_dim},
        "tokenizer": {"type": "vocabulary", "vocab_file": VOCAB_FILE, "pad_id": vocab.pad_id,
                      "bos_id": vocab.bos_id, "eos_id": vocab.eos_id, "unk_id": vocab.unk_id,
                      "join": " ", "size": len(vocab),
                      "tokenisation": "lower case, words [a-z0-9]+ (inner apostrophe kept)"},
        "decoding": {"default_beam_size": args.beam_size,
                     "length_penalty": args.length_penalty, "max_length": args.max_length},
        "metrics": metrics,
        "parity": parity.manifest_entry(),
        "training": training,
        "libraries": library_versions(),
    }


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

