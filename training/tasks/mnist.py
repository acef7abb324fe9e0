"""MNIST-style digit classification: softmax regression, MLP or small CNN.

Trains on an IDX folder (--data-dir; the official MNIST file names, any image size and number of
classes) or on the 5,000 bundled digits, calibrates with temperature scaling on the validation
split, exports raw-pixels-in / probabilities-out to ONNX, checks parity with onnxruntime,
scores the exported file on the held-out test split and publishes it as a new version.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.batching import ShuffledBatches
from training.calibration import fit_temperature
from training.data.mnist import LABELS_FILE, ImageDataset, Split, load_mnist
from training.distributed import finish_training
from training.evaluate import evaluate_classifier
from training.export.classifier_graph import (
    INPUT_NAME,
    OUTPUT_NAMES,
    ClassifierGraph,
    parity_batches,
)
from training.export.onnx_export import export_onnx
from training.export.parity import check_parity
from training.export.quantize import compare, quantize_int8
from training.loop import StepOutput, TrainResult, fit
from training.losses import cross_entropy
from training.metrics import format_confusion_matrix
from training.models import ACTIVATIONS, ARCHITECTURES, build_classifier
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
    penalty_strengths,
    positive_int,
    resolve_device,
    train_config,
)

HELP = "softmax / MLP / CNN digit classifier (MNIST IDX files or bundled digits)"
GRAPH_FILE = "model.onnx"
MAX_BATCH_SIZE = 256
EVAL_BATCH = 1024

# Chosen on the validation split of the 60k MNIST training files so that a default run on two
# CPU cores takes a few minutes (see the issue notes for the measured test figures).
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "softmax": {"epochs": 10, "optimizer": "adam", "lr": 3e-3, "batch_size": 128,
                "dropout": 0.0, "hidden": []},
    "mlp": {"epochs": 20, "optimizer": "adam", "lr": 1e-3, "batch_size": 128,
            "dropout": 0.2, "hidden": [256, 128]},
    "cnn": {"epochs": 6, "optimizer": "adam", "lr": 1e-3, "batch_size": 128,
            "dropout": 0.5, "hidden": [128]},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    model = parser.add_argument_group(
        "model", "Unset options take per-architecture defaults: "
        + "; ".join(f"{arch}: " + ", ".join(f"{k}={v}" for k, v in d.items())
                    for arch, d in ARCH_DEFAULTS.items()))
    model.add_argument("--arch", choices=ARCHITECTURES, default="mlp",
                       help="softmax regression, MLP or small CNN (default: %(default)s)")
    model.add_argument("--hidden", type=int_list, default=None, metavar="N,N,...",
                       help="hidden layer sizes (MLP), fully connected sizes after the "
                            "convolutions (CNN)")
    model.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu",
                       help="hidden-layer activation (default: %(default)s)")
    data = parser.add_argument_group(
        "data and calibration",
        "--data-dir: a folder in the MNIST IDX layout (train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-..., each optionally .gz). Classes are numbered 0..the "
        f"largest label unless a {LABELS_FILE} there names them, line i naming class i. A "
        "class no training image has is refused (see --allow-unseen-classes).")
    data.add_argument("--limit-train", type=positive_int, default=None, metavar="N",
                      help="train on the first N training images only (quick runs)")
    add_unseen_classes_argument(data)
    data.add_argument("--no-calibrate", action="store_true",
                      help="skip temperature scaling (T = 1)")
    data.add_argument("--quantize", choices=["none", "int8"], default="none",
                      help="publish the INT8 dynamically quantised graph, with its accuracy "
                           "and speed against the float graph in the manifest")


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill options left unset with the architecture's defaults (recorded in the manifest)."""
    resolved = argparse.Namespace(**vars(args))
    for key, value in ARCH_DEFAULTS[args.arch].items():
        if getattr(resolved, key, None) is None:
            setattr(resolved, key, value)
    if resolved.name is None:
        resolved.name = f"mnist-{args.arch}"
    if resolved.checkpoint_dir is None:
        resolved.checkpoint_dir = Path("runs") / resolved.name
    return resolved


def run(args: argparse.Namespace) -> int:
    args = resolve_defaults(args)
    with claimed_outputs(args.repository, args.checkpoint_dir):
        return train_and_publish(args)


def train_and_publish(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    seed_everything(args.seed)
    device = resolve_device(args.device)
    args.device_used = str(device)  # recorded in the manifest beside the requested "auto"
    data = load_mnist(args.data_dir)
    train = data.train.head(args.limit_train) if args.limit_train else data.train
    args.unseen_classes = check_unseen_classes(
        data.class_names, data.train_counts(train),
        f"{data.source}, classes {data.class_origin}" if data.class_origin else data.source,
        args.allow_unseen_classes)
    mean, std = pixel_statistics(train.images)
    print(f"mnist {args.arch}: {len(train)} train / {len(data.validation)} validation / "
          f"{len(data.test)} test images of {data.image_shape}, {data.num_classes} classes, "
          f"from {data.source}; device {device}, seed {args.seed}")

    model = build_classifier(args.arch, data.image_shape, data.num_classes, args.hidden,
                             args.activation, args.dropout).to(device)
    result = train_classifier(model, train, data.validation, mean, std, args, device)
    if not finish_training().is_main:
        return 0  # under torchrun rank 0 alone evaluates, exports and publishes
    temperature = 1.0
    if not args.no_calibrate:
        logits = predict_logits(model, to_tensor(data.validation.images, mean, std, device))
        temperature = fit_temperature(logits, data.validation.labels)

    graph = ClassifierGraph(model.cpu(), mean, std, temperature).eval()
    test_images = data.test.images[:, None]  # (N, 1, H, W) as the graph takes them
    with staged_version(args.repository, args.name) as writer:
        onnx_path = writer.path / GRAPH_FILE
        # any batch of 2+ will do: the exporter would freeze a batch axis traced at size 1
        example = torch.zeros((2, *data.image_shape))
        export_onnx(graph, (example,), onnx_path, [INPUT_NAME], OUTPUT_NAMES,
                    {INPUT_NAME: {0: "batch"}})
        parity = check_parity(graph, onnx_path, parity_batches(test_images),
                              tolerance=args.parity_tolerance)
        quantization = None
        if args.quantize == "int8":
            quantization = quantize_in_place(onnx_path, data.test, test_images)
        # the published figures come from the staged file itself, as the server will run it
        test_metrics = evaluate_classifier(onnx_path, data.test)
        val_metrics = evaluate_classifier(onnx_path, data.validation)
        manifest = build_manifest(args, data, train, mean, std, temperature, result, parity,
                                  test_metrics, val_metrics, time.perf_counter() - started)
        if quantization is not None:
            manifest["quantization"] = quantization
        version, _ = writer.commit(manifest)

    m = manifest["metrics"]
    print(f"published {Path(args.repository) / args.name / str(version)}")
    print(f"test accuracy {m['accuracy']:.4f} ({m['n_test']} held-out images, "
          f"onnxruntime on the exported model)")
    print(f"test cross-entropy {m['cross_entropy']:.4f} "
          f"(uncalibrated {m['cross_entropy_uncalibrated']:.4f})")
    print(f"ECE ({m['ece_bins']} bins) before {m['ece_before']:.4f} after {m['ece_after']:.4f} "
          f"temperature scaling (T = {temperature:.3f})")
    print(f"validation accuracy {m['validation_accuracy']:.4f}; best epoch "
          f"{result.best_epoch}/{result.epochs_run}; parity max |diff| "
          f"{parity.max_abs_diff:.2e}")
    if quantization is not None:
        print(f"int8: test accuracy {quantization['int8_score']:.4f} vs float "
              f"{quantization['float_score']:.4f}; batch 1 {quantization['speedup_batch1']}x, "
              f"batch {quantization['batch']} {quantization['speedup_batch']}x the float speed")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(format_confusion_matrix(m["confusion_matrix"], data.class_names))
    return 0


def quantize_in_place(onnx_path: Path, test: Split, test_images: np.ndarray) -> dict[str, Any]:
    """Replace the staged float graph by its INT8 version; report both side by side."""
    float_path = onnx_path.with_name("float.onnx.tmp")
    onnx_path.rename(float_path)
    quantize_int8(float_path, onnx_path)
    feeds = {INPUT_NAME: test_images[:256].astype(np.float32)}
    report = compare(float_path, onnx_path, feeds,
                     lambda path: evaluate_classifier(path, test)["accuracy"])
    float_path.unlink()  # one graph is served: the quantised one
    return report


def train_classifier(model: nn.Module, train: Split, validation: Split,
                     mean: list[float], std: list[float], args: argparse.Namespace,
                     device: torch.device) -> TrainResult:
    x_train = to_tensor(train.images, mean, std, device)
    y_train = torch.from_numpy(train.labels).to(device)
    x_val = to_tensor(validation.images, mean, std, device)
    y_val = torch.from_numpy(validation.labels).to(device)

    def step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, y = batch
        logits = model(x)
        correct = (logits.argmax(dim=1) == y).sum().item()
        return StepOutput(cross_entropy(logits, y), len(y), {"acc": correct})

    def evaluate(model: nn.Module) -> dict[str, float]:
        logits = predict_logits(model, x_val)
        loss = cross_entropy(logits, y_val, reduction="sum").item() / len(y_val)
        return {"loss": loss, "acc": (logits.argmax(dim=1) == y_val).float().mean().item()}

    optimizer = build_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum)
    return fit(
        model, step, ShuffledBatches((x_train, y_train), args.batch_size, args.seed), evaluate,
        optimizer,
        train_config(args),
        scheduler=build_scheduler(args.lr_schedule, optimizer, args.epochs),
        penalty=build_penalty(args),
    )


def pixel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the training pixels scaled to [0, 1]."""
    x = images.astype(np.float64) / 255.0
    std = float(x.std())
    return [float(x.mean())], [std if std > 0 else 1.0]


def to_tensor(images: np.ndarray, mean: list[float], std: list[float],
              device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W) -> normalised float32 (N, 1, H, W), exactly as the exported graph does."""
    x = torch.from_numpy(images[:, None].astype(np.float32)).to(device)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return (x / 255.0 - m) / s


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])
    model.train(was_training)
    return out


def background(images: np.ndarray) -> str:
    """'black' when the border pixels are mostly dark (digits drawn light on dark, as MNIST)."""
    border = np.concatenate([images[:, 0, :], images[:, -1, :], images[:, :, 0],
                             images[:, :, -1]], axis=1)
    return "black" if border.mean() < 128 else "white"


def build_manifest(args: argparse.Namespace, data: ImageDataset, train: Split,
                   mean: list[float], std: list[float], temperature: float,
                   result: TrainResult, parity: Any, test_metrics: dict[str, Any],
                   val_metrics: dict[str, Any], wall_seconds: float) -> dict[str, Any]:
    c, h, w = data.image_shape
    k = data.num_classes
    l1, l2 = penalty_strengths(args)
    metrics = {
        "split": "test",
        "n_test": test_metrics["n"],
        "accuracy": test_metrics["accuracy"],
        "cross_entropy": test_metrics["cross_entropy"],
        "cross_entropy_uncalibrated": test_metrics["cross_entropy_uncalibrated"],
        "ece_before": test_metrics["ece_before"],
        "ece_after": test_metrics["ece_after"],
        "ece_bins": test_metrics["ece_bins"],
        "temperature": temperature,
        "confusion_matrix": test_metrics["confusion_matrix"],
        "validation_accuracy": val_metrics["accuracy"],
        "validation_cross_entropy": val_metrics["cross_entropy"],
        "n_validation": val_metrics["n"],
        "evaluated_with": "onnxruntime CPUExecutionProvider on the exported model.onnx",
    }
    training = {
        **jsonable_config(args),
        "task": "mnist",
        "l1_effective": l1,
        "l2_effective": l2,
        "calibrated": not args.no_calibrate,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "data": {"source": data.source, "train": len(train),
                 "validation": len(data.validation), "test": len(data.test),
                 "split_seed": 0},
        "distributed": result.world.manifest_entry(),
        "history": [asdict(r) for r in result.history],
    }
    return {
        "task": "classify",
        "graphs": {"model": GRAPH_FILE},
        "inputs": [{"name": INPUT_NAME, "dtype": "float32", "shape": [-1, c, h, w]}],
        "outputs": [{"name": name, "dtype": "float32", "shape": [-1, k]}
                    for name in OUTPUT_NAMES],
        "labels": data.class_names,
        "preprocessing": {
            "kind": "image", "color": "grayscale", "height": h, "width": w, "channels": c,
            "layout": "NCHW", "input_range": [0, 255],
            "normalization": {"mean": mean, "std": std, "applied_in_graph": True},
            "background": background(train.images),
        },
        "metrics": metrics,
        "parity": parity.manifest_entry(),
        "training": training,
        "libraries": library_versions(),
        "serving": {"max_batch_size": MAX_BATCH_SIZE},
    }
