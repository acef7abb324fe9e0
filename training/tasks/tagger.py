"""Multi-label sigmoid tagger: one sigmoid per label, binary cross-entropy summed over labels.

Data (--dataset):
  multidigit  canvases holding 1-4 real MNIST digits; the tags say which digits appear. Digits
              come from an MNIST IDX folder (--data-dir) or the bundled 5,000 digits; train,
              validation and test canvases are drawn from disjoint digit splits.
  folder      your own images: --data-dir holds them and tags.csv (image,tags; or --tags-csv).
              python -m training.data.caption_tags derives such a CSV from image captions.

After training (early stopping on validation BCE) the tagger is exported with normalisation and
sigmoid inside the graph, checked for parity with onnxruntime, and the exported file is scored:
per-label thresholds are tuned for F1 on the validation split, then the held-out test split gives
micro / macro F1, exact match and Hamming loss (tuned and at 0.5), precision@1/3 and mAP beside
the label-frequency baseline. Thresholds, labels and figures go into the manifest.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from training.batching import ShuffledBatches
from training.data.idx import DataError
from training.data.mnist import load_mnist
from training.data.multidigit import (
    CANVAS_SEED,
    CANVAS_SIZE,
    MAX_DIGITS,
    MAX_OVERLAP,
    MIN_DIGITS,
    make_multidigit,
)
from training.data.tagging import TaggingDataset, TaggingSplit
from training.data.tagging_folder import (
    IMAGE_SIZE,
    TEST_FRACTION,
    VAL_FRACTION,
    load_tagging_folder,
)
from training.distributed import finish_training
from training.evaluate import run_classifier
from training.export.classifier_graph import (
    INPUT_NAME,
    OUTPUT_NAMES,
    ClassifierGraph,
    parity_batches,
)
from training.export.onnx_export import export_onnx
from training.export.parity import ParityReport, check_parity
from training.loop import StepOutput, TrainResult, fit
from training.losses import balancing_pos_weight, binary_cross_entropy
from training.models import ACTIVATIONS
from training.models.taggers import TAGGER_ARCHITECTURES, build_tagger, init_output_bias
from training.multilabel_metrics import (
    decide,
    decision_metrics,
    format_report,
    multilabel_report,
    ranking_metrics,
    tune_thresholds,
)
from training.outputs import claimed_outputs, staged_version
from training.seeding import seed_everything
from training.tasks.common import (
    add_common_arguments,
    add_unseen_classes_argument,
    build_optimizer,
    build_penalty,
    build_scheduler,
    check_unseen_classes,
    int_list,
    jsonable_config,
    library_versions,
    non_negative_int,
    penalty_strengths,
    positive_float,
    positive_int,
    resolve_device,
    split_fraction,
    train_config,
    unit_interval,
)

HELP = "multi-label sigmoid tagger (multi-digit canvases or a folder of tagged images)"
DATASETS = ("multidigit", "folder")
DEFAULT_NAMES = {"multidigit": "tagger-multidigit", "folder": "tagger-photos"}
GRAPH_FILE = "model.onnx"
MAX_BATCH_SIZE = 256
EVAL_BATCH = 512
POS_WEIGHTS = ("none", "auto")

# Chosen on the validation canvases of the 60k MNIST training digits so that a default run on
# two CPU cores takes a few minutes (the issue notes give the measured test figures).
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "cnn": {"epochs": 8, "optimizer": "adam", "lr": 2e-3, "batch_size": 64, "dropout": 0.1,
            "hidden": [64], "channels": [16, 32, 64, 64]},
    "mlp": {"epochs": 20, "optimizer": "adam", "lr": 1e-3, "batch_size": 128, "dropout": 0.2,
            "hidden": [512, 256], "channels": []},
}

# A few hundred photos take a second an epoch and keep improving long after the digits would
# stop; early stopping (--patience) ends the run when the validation loss turns.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "multidigit": {"hflip": False},
    "folder": {"epochs": 40, "hflip": True},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    model = parser.add_argument_group(
        "model", "Unset options take per-dataset, then per-architecture defaults: "
        + "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in d.items())
                    for name, d in (*DATASET_DEFAULTS.items(), *ARCH_DEFAULTS.items())))
    model.add_argument("--arch", choices=TAGGER_ARCHITECTURES, default="cnn",
                       help="CNN with global pooling, or MLP on the pixels "
                            "(default: %(default)s)")
    model.add_argument("--channels", type=int_list, default=None, metavar="N,N,...",
                       help="CNN: output channels of the conv stages, each halving the size")
    model.add_argument("--hidden", type=int_list, default=None, metavar="N,N,...",
                       help="fully connected hidden sizes (after the pooling for the CNN)")
    model.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu",
                       help="hidden-layer activation (default: %(default)s)")
    model.add_argument("--pos-weight", choices=POS_WEIGHTS, default="none",
                       help="auto: weight each label's positives by negatives/positives of the "
                            "training set (clipped to --max-pos-weight) for rare labels "
                            "(default: %(default)s)")
    model.add_argument("--max-pos-weight", type=positive_float, default=10.0,
                       help="clip of the auto positive weights (default: %(default)s)")

    data = parser.add_argument_group(
        "data", "--data-dir: for multidigit an MNIST IDX folder (default: the bundled digits); "
        "for folder the folder of images with its tags.csv")
    data.add_argument("--dataset", choices=DATASETS, default="multidigit",
                      help="(default: %(default)s)")
    data.add_argument("--limit-train", type=positive_int, default=None, metavar="N",
                      help="train on the first N training images only (quick runs)")
    add_unseen_classes_argument(data)
    data.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                      help="augment: mirror a random half of each batch left-right (default: "
                           "on for folder, off for multidigit, whose digits mirroring changes)")
    canvas = parser.add_argument_group("multidigit canvases")
    canvas.add_argument("--canvas-size", type=positive_int, default=CANVAS_SIZE,
                        help="canvas side in pixels (default: %(default)s)")
    canvas.add_argument("--min-digits", type=positive_int, default=MIN_DIGITS,
                        help="(default: %(default)s)")
    canvas.add_argument("--max-digits", type=positive_int, default=MAX_DIGITS,
                        help="(default: %(default)s)")
    canvas.add_argument("--max-overlap", type=unit_interval, default=MAX_OVERLAP,
                        help="largest share of the smaller digit box two digits may share "
                             "(default: %(default)s)")
    canvas.add_argument("--train-canvases", type=positive_int, default=20000,
                        help="(default: %(default)s)")
    canvas.add_argument("--val-canvases", type=positive_int, default=2000,
                        help="(default: %(default)s)")
    canvas.add_argument("--test-canvases", type=positive_int, default=4000,
                        help="(default: %(default)s)")
    canvas.add_argument("--canvas-seed", type=non_negative_int, default=CANVAS_SEED,
                        help="seed of the canvases, separate from --seed so the held-out "
                             "canvases stay the same across training seeds "
                             "(default: %(default)s)")
    folder = parser.add_argument_group("image folder")
    folder.add_argument("--tags-csv", type=Path, default=None,
                        help="the image,tags CSV (default: DATA_DIR/tags.csv)")
    folder.add_argument("--image-size", type=positive_int, default=IMAGE_SIZE,
                        help="images are resized to this square size (default: %(default)s)")
    folder.add_argument("--val-fraction", type=split_fraction, default=VAL_FRACTION,
                        help="(default: %(default)s)")
    folder.add_argument("--test-fraction", type=split_fraction, default=TEST_FRACTION,
                        help="(default: %(default)s)")


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill options left unset with the dataset's, then the architecture's defaults (recorded
    in the manifest)."""
    resolved = argparse.Namespace(**vars(args))
    for defaults in (DATASET_DEFAULTS[args.dataset], ARCH_DEFAULTS[args.arch]):
        for key, value in defaults.items():
            if getattr(resolved, key, None) is None:
                setattr(resolved, key, value)
    if resolved.name is None:
        resolved.name = DEFAULT_NAMES[args.dataset]
    if resolved.checkpoint_dir is None:
        resolved.checkpoint_dir = Path("runs") / resolved.name
    return resolved


def load_data(args: argparse.Namespace) -> TaggingDataset:
    if args.dataset == "folder":
        if args.data_dir is None:
            raise DataError("--dataset folder needs --data-dir: a folder of images with "
                            "its tags.csv")
        return load_tagging_folder(args.data_dir, args.tags_csv,
                                   (args.image_size, args.image_size), args.val_fraction,
                                   args.test_fraction)
    digits = load_mnist(args.data_dir)
    canvases = make_multidigit(
        digits, (args.train_canvases, args.val_canvases, args.test_canvases),
        seed=args.canvas_seed, canvas_size=args.canvas_size, min_digits=args.min_digits,
        max_digits=args.max_digits, max_overlap=args.max_overlap)
    return canvases.as_tagging(digits.source)


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
    args.unseen_classes = check_unseen_classes(
        data.labels, train.targets.sum(axis=0).tolist(), data.details.get("tags_csv", data.source),
        args.allow_unseen_classes)
    mean, std = channel_statistics(train.images)
    print(f"tagger {args.arch} on {data.source}: {len(train)} train / {len(data.validation)} "
          f"validation / {len(data.test)} test images of {data.image_shape}, "
          f"{data.num_labels} labels, {train.targets.sum(1).mean():.2f} per training image; "
          f"device {device}, seed {args.seed}")

    model = build_tagger(args.arch, data.image_shape, data.num_labels, args.hidden,
                         args.channels, args.activation, args.dropout)
    init_output_bias(model, train.targets.mean(axis=0))
    # the module trained is the module exported: normalisation in, sigmoid out
    graph = ClassifierGraph(model, mean, std, head="sigmoid").to(device)
    pos_weight = balancing_pos_weight(train.targets, args.max_pos_weight).to(device) \
        if args.pos_weight == "auto" else None
    result = train_tagger(graph, train, data.validation, pos_weight, args, device)
    if not finish_training().is_main:
        return 0  # under torchrun rank 0 alone evaluates, exports and publishes
    graph = graph.cpu().eval()

    with staged_version(args.repository, args.name) as writer:
        onnx_path = writer.path / GRAPH_FILE
        # any batch of 2+ will do: the exporter would freeze a batch axis traced at size 1
        export_onnx(graph, (torch.zeros((2, *data.image_shape)),), onnx_path, [INPUT_NAME],
                    OUTPUT_NAMES, {INPUT_NAME: {0: "batch"}})
        parity = check_parity(graph, onnx_path, parity_batches(data.test.images),
                              tolerance=args.parity_tolerance)
        # thresholds and figures come from the staged file itself, as the server will run it
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        val_probs, _ = run_classifier(onnx_path, data.validation.images, session=session)
        thresholds = tune_thresholds(val_probs, data.validation.targets)
        test_probs, test_logits = run_classifier(onnx_path, data.test.images, session=session)
        report = multilabel_report(test_probs, test_logits, data.test.targets, thresholds,
                                   data.labels, train.targets)
        validation = {**decision_metrics(decide(val_probs, thresholds),
                                         data.validation.targets),
                      **ranking_metrics(val_probs, data.validation.targets)}
        manifest = build_manifest(args, data, train, mean, std, thresholds, result, parity,
                                  report, validation, time.perf_counter() - started)
        version, _ = writer.commit(manifest)

    print(f"published {Path(args.repository) / args.name / str(version)}")
    print(summary(manifest["metrics"], result, parity))
    print(format_report(report))
    return 0


def train_tagger(graph: ClassifierGraph, train: TaggingSplit, validation: TaggingSplit,
                 pos_weight: torch.Tensor | None, args: argparse.Namespace,
                 device: torch.device) -> TrainResult:
    """Fit the graph's model on raw pixels; batches stay uint8 until they reach the graph."""
    x_train = torch.from_numpy(train.images).to(device)
    y_train = torch.from_numpy(train.targets.astype(np.float32)).to(device)
    x_val = torch.from_numpy(validation.images).to(device)
    y_val = validation.targets

    def step(graph: ClassifierGraph, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, y = batch
        if args.hflip:
            # tags of a photo survive mirroring; the RNG is the run's seeded global one
            mirror = torch.rand(len(x), device=x.device) < 0.5
            x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
        _, logits = graph(x.float())
        return StepOutput(binary_cross_entropy(logits, y, pos_weight), len(y))

    def evaluate(graph: ClassifierGraph) -> dict[str, float]:
        probs, logits = predict(graph, x_val)
        targets = torch.from_numpy(y_val.astype(np.float32))
        # the validation loss is plain BCE, whatever --pos-weight: it is what early stopping
        # and the exported probabilities are judged by
        loss = binary_cross_entropy(logits, targets).item()
        at_half = decision_metrics(decide(probs.numpy(), 0.5), y_val)
        return {"loss": loss, "micro_f1": at_half["micro_f1"],
                "exact": at_half["exact_match"],
                "map": ranking_metrics(probs.numpy(), y_val)["map"]}

    optimizer = build_optimizer(args.optimizer, graph.parameters(), args.lr, args.momentum)
    return fit(
        graph, step, ShuffledBatches((x_train, y_train), args.batch_size, args.seed), evaluate,
        optimizer,
        train_config(args),
        scheduler=build_scheduler(args.lr_schedule, optimizer, args.epochs),
        penalty=build_penalty(args),
    )


@torch.no_grad()
def predict(graph: ClassifierGraph, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, logits) on the CPU for uint8 pixels, in eval mode and in chunks."""
    was_training = graph.training
    graph.eval()
    outputs = [graph(pixels[i:i + EVAL_BATCH].float()) for i in range(0, len(pixels), EVAL_BATCH)]
    graph.train(was_training)
    return (torch.cat([p for p, _ in outputs]).cpu(), torch.cat([z for _, z in outputs]).cpu())


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) training pixels scaled to [0, 1]."""
    x = images.astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3))
    return [float(m) for m in mean], [float(s) if s > 0 else 1.0 for s in std]


def summary(m: dict[str, Any], result: TrainResult, parity: ParityReport) -> str:
    half, base = m["at_threshold_0.5"], m["baseline_label_frequency"]
    return "\n".join([
        f"test: {m['n_test']} held-out images, onnxruntime on the exported model; "
        "decisions with the validation-tuned thresholds | the global 0.5",
        f"  micro-F1 {m['micro_f1']:.4f} | {half['micro_f1']:.4f}   "
        f"macro-F1 {m['macro_f1']:.4f} | {half['macro_f1']:.4f}",
        f"  exact match {m['exact_match']:.4f} | {half['exact_match']:.4f}   "
        f"Hamming loss {m['hamming_loss']:.4f} | {half['hamming_loss']:.4f}",
        f"  micro precision {m['micro_precision']:.4f} | {half['micro_precision']:.4f}   "
        f"micro recall {m['micro_recall']:.4f} | {half['micro_recall']:.4f}",
        f"  mAP {m['map']:.4f} (label-frequency baseline {base['map']:.4f})   "
        f"precision@1 {m['precision_at_1']:.4f} ({base['precision_at_1']:.4f})   "
        f"precision@3 {m['precision_at_3']:.4f} ({base['precision_at_3']:.4f})",
        f"  BCE {m['bce']:.4f} per image; best epoch {result.best_epoch}/{result.epochs_run}; "
        f"parity max |diff| {parity.max_abs_diff:.2e}",
    ])


def build_manifest(args: argparse.Namespace, data: TaggingDataset, train: TaggingSplit,
                   mean: list[float], std: list[float], thresholds: np.ndarray,
                   result: TrainResult, parity: ParityReport, report: dict[str, Any],
                   validation: dict[str, float], wall_seconds: float) -> dict[str, Any]:
    c, h, w = data.image_shape
    labels = data.num_labels
    l1, l2 = penalty_strengths(args)
    metrics = {
        "split": "test",
        "n_test": report["n"],
        **{k: v for k, v in report.items() if k != "n"},
        "thresholds": "per label, max F1 over 0.01..0.99 on the validation split",
        # optimistic for the decision figures: the thresholds were tuned on this split
        "validation": {"n": len(data.validation), "thresholds_tuned_here": True, **validation},
        "evaluated_with": "onnxruntime CPUExecutionProvider on the exported model.onnx",
    }
    training = {
        **jsonable_config(args),
        "task": "tagger",
        "l1_effective": l1,
        "l2_effective": l2,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "data": {"source": data.source, "train": len(train),
                 "validation": len(data.validation), "test": len(data.test),
                 "train_label_counts": dict(zip(data.labels,
                                                train.targets.sum(0).tolist(), strict=True)),
                 **data.details},
        "distributed": result.world.manifest_entry(),
        "history": [asdict(r) for r in result.history],
    }
    preprocessing = {
        "kind": "image", "color": data.color, "height": h, "width": w, "channels": c,
        "layout": "NCHW", "input_range": [0, 255],
        "normalization": {"mean": mean, "std": std, "applied_in_graph": True},
    }
    if args.dataset == "multidigit":
        preprocessing["background"] = "black"  # light digits on dark, as MNIST
    else:
        preprocessing["resize"] = "bilinear"
    return {
        "task": "tag",
        "graphs": {"model": GRAPH_FILE},
        "inputs": [{"name": INPUT_NAME, "dtype": "float32", "shape": [-1, c, h, w]}],
        "outputs": [{"name": name, "dtype": "float32", "shape": [-1, labels]}
                    for name in OUTPUT_NAMES],
        "labels": list(data.labels),
        "thresholds": [float(t) for t in thresholds],
        "preprocessing": preprocessing,
        "metrics": metrics,
        "parity": parity.manifest_entry(),
        "training": training,
        "libraries": library_versions(),
        "serving": {"max_batch_size": MAX_BATCH_SIZE},
    }
