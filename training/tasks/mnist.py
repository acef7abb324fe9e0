"""MNIST-style digit classification: softmax regression, MLP or small CNN.

Trains on an IDX folder (data_dir; the official MNIST file names, any image size and number of
classes) or on the 5,000 bundled digits, calibrates with temperature scaling on the validation
split, exports raw-pixels-in / probabilities-out to ONNX, checks parity with onnxruntime,
scores the exported file on the held-out test split and publishes it as a new version.

Presets: training/configs/mnist-{softmax,mlp,cnn}.yaml. A folder of IDX files names its classes
0..the largest label unless a labels.txt there names them, line i naming class i; a class no
training image has is refused (see --allow-unseen-classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.batching import ShuffledBatches
from training.calibration import choose_temperature
from training.config_schema import MnistConfig
from training.data.mnist import ImageDataset, Split, load_mnist
from training.evaluate import evaluate_classifier
from training.export.classifier_graph import INPUT_NAME, ClassifierGraph
from training.export.quantize import compare, quantize_int8
from training.loop import StepOutput, TrainResult
from training.losses import cross_entropy
from training.metrics import format_confusion_matrix
from training.models import build_classifier
from training.task import Publication, TaskBase, Training
from training.tasks.common import (
    SERVING_MAX_BATCH,
    channel_statistics,
    check_unseen_classes,
    export_image_model,
    head,
    image_model_sections,
)

EVAL_BATCH = 1024


class MnistTask(TaskBase):
    name = "mnist"
    help = "softmax / MLP / CNN digit classifier (MNIST IDX files or bundled digits)"
    schema = MnistConfig
    variant = ("arch", "mlp")  # preset mnist-<arch>

    def prepare(self, config: MnistConfig, device: torch.device) -> Training:
        self.config = config
        self.data = data = load_mnist(config.data_dir)
        self.train = train = head(data.train, config.limit_train)
        self.unseen = check_unseen_classes(
            data.class_names, data.train_counts(train),
            f"{data.source}, classes {data.class_origin}" if data.class_origin else data.source,
            config.allow_unseen_classes)
        self.mean, self.std = channel_statistics(train.images)
        print(f"mnist {config.arch}: {len(train)} train / {len(data.validation)} validation / "
              f"{len(data.test)} test images of {data.image_shape}, {data.num_classes} "
              f"classes, from {data.source}; device {device}, seed {config.seed}")
        self.model = model = build_classifier(config.arch, data.image_shape, data.num_classes,
                                              config.hidden, config.activation,
                                              config.dropout).to(device)
        x_train = to_tensor(train.images, self.mean, self.std, device)
        y_train = torch.from_numpy(train.labels).to(device)
        x_val = to_tensor(data.validation.images, self.mean, self.std, device)
        y_val = torch.from_numpy(data.validation.labels).to(device)

        def step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
            x, y = batch
            logits = model(x)
            correct = (logits.argmax(dim=1) == y).sum().item()
            return StepOutput(cross_entropy(logits, y), len(y), {"acc": correct})

        def evaluate(model: nn.Module) -> dict[str, float]:
            logits = predict_logits(model, x_val)
            loss = cross_entropy(logits, y_val, reduction="sum").item() / len(y_val)
            return {"loss": loss, "acc": (logits.argmax(dim=1) == y_val).float().mean().item()}

        return Training(model, step, ShuffledBatches((x_train, y_train), config.batch_size,
                                                     config.seed), evaluate)

    def publish(self, folder: Path, result: TrainResult) -> Publication:
        config, data = self.config, self.data
        temperature, calibration = 1.0, None
        if config.calibrate:
            logits = predict_logits(self.model, to_tensor(data.validation.images, self.mean,
                                                          self.std, torch.device("cpu")))
            # kept only where it lowers validation NLL and ECE; the manifest says why
            calibration = choose_temperature(logits, data.validation.labels)
            temperature = calibration.temperature
        graph = ClassifierGraph(self.model, self.mean, self.std, temperature).eval()
        test_images = data.test.images[:, None]  # (N, 1, H, W) as the graph takes them
        onnx_path, parity = export_image_model(graph, folder, data.image_shape, test_images,
                                               config.parity_tolerance)
        sections: dict[str, Any] = {}
        if calibration is not None:
            sections["calibration"] = calibration.to_dict()
        if config.quantize == "int8":
            sections["quantization"] = quantize_in_place(onnx_path, data.test, test_images)
        # the published figures come from the staged file itself, as the server will run it
        test_metrics = evaluate_classifier(onnx_path, data.test)
        val_metrics = evaluate_classifier(onnx_path, data.validation)
        metrics = {
            "split": "test", "n_test": test_metrics["n"],
            **{k: test_metrics[k] for k in ("accuracy", "cross_entropy",
                                            "cross_entropy_uncalibrated", "ece_before",
                                            "ece_after", "ece_bins", "confusion_matrix")},
            "temperature": temperature,
            "validation_accuracy": val_metrics["accuracy"],
            "validation_cross_entropy": val_metrics["cross_entropy"],
            "n_validation": val_metrics["n"],
            "evaluated_with": "onnxruntime CPUExecutionProvider on the exported model.onnx",
        }
        sections = {
            "task": "classify",
            **image_model_sections(data.image_shape, data.num_classes, "grayscale", self.mean,
                                   self.std, background=background(self.train.images)),
            "labels": data.class_names, "metrics": metrics,
            "serving": {"max_batch_size": SERVING_MAX_BATCH}, **sections,
        }
        training = {"unseen_classes": self.unseen,
                    "data": {"source": data.source, "train": len(self.train),
                             "validation": len(data.validation), "test": len(data.test),
                             "split_seed": 0}}
        report = summary(metrics, sections.get("quantization"), result, parity.max_abs_diff, data)
        if calibration is not None:
            report = f"calibration: {calibration.reason}\n{report}"
        return Publication(sections, parity, report, training)


def summary(m: dict[str, Any], quantization: dict[str, Any] | None, result: TrainResult,
            parity: float, data: ImageDataset) -> str:
    lines = [
        f"test accuracy {m['accuracy']:.4f} ({m['n_test']} held-out images, onnxruntime on the "
        "exported model)",
        f"test cross-entropy {m['cross_entropy']:.4f} (uncalibrated "
        f"{m['cross_entropy_uncalibrated']:.4f})",
        f"ECE ({m['ece_bins']} bins) before {m['ece_before']:.4f} after {m['ece_after']:.4f} "
        f"temperature scaling (T = {m['temperature']:.3f})",
        f"validation accuracy {m['validation_accuracy']:.4f}; best epoch "
        f"{result.best_epoch}/{result.epochs_run}; parity max |diff| {parity:.2e}",
    ]
    if quantization is not None:
        q = quantization
        lines.append(f"int8: test accuracy {q['int8_score']:.4f} vs float {q['float_score']:.4f};"
                     f" batch 1 {q['speedup_batch1']}x, batch {q['batch']} "
                     f"{q['speedup_batch']}x the float speed")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append(format_confusion_matrix(m["confusion_matrix"], data.class_names))
    return "\n".join(lines)


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
