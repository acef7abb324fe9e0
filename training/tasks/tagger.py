"""Multi-label sigmoid tagger: one sigmoid per label, binary cross-entropy summed over labels.

Data (dataset):
  multidigit  canvases holding 1-4 real MNIST digits; the tags say which digits appear. Digits
              come from an MNIST IDX folder (--data-dir) or the bundled 5,000 digits; train,
              validation and test canvases are drawn from disjoint digit splits.
  folder      your own images: --data-dir holds them and tags.csv (image,tags; or --tags-csv).
              python -m training.data.caption_tags derives such a CSV from image captions.

Presets: training/configs/tagger-{multidigit,folder}.yaml (then --arch mlp takes the MLP's sizes
from tagger-mlp.yaml). After training (early stopping on validation BCE) the tagger is exported
with normalisation and sigmoid inside the graph, checked for parity with onnxruntime, and the
exported file is scored: per-label thresholds are tuned for F1 on the validation split, then the
held-out test split gives micro / macro F1, exact match and Hamming loss (tuned and at 0.5),
precision@1/3 and mAP beside the label-frequency baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from training.batching import ShuffledBatches
from training.config_schema import TaggerConfig
from training.data.idx import DataError
from training.data.tagging import TaggingDataset
from training.data.tagging_folder import load_tagging_folder
from training.evaluate import run_classifier
from training.export.classifier_graph import ClassifierGraph
from training.loop import StepOutput, TrainResult
from training.losses import balancing_pos_weight, binary_cross_entropy
from training.models.taggers import build_tagger, init_output_bias
from training.multilabel_metrics import (
    decide,
    decision_metrics,
    format_report,
    multilabel_report,
    ranking_metrics,
    tune_thresholds,
)
from training.task import Publication, Training
from training.tasks.common import (
    SERVING_MAX_BATCH,
    canvases,
    channel_statistics,
    check_unseen_classes,
    export_image_model,
    head,
    image_model_sections,
)

EVAL_BATCH = 512


class TaggerTask:
    name = "tagger"
    help = "multi-label sigmoid tagger (multi-digit canvases or tagged images)"
    schema = TaggerConfig

    @staticmethod
    def preset(given: Mapping[str, Any]) -> str:
        # the MLP has presets of its own: its sizes are not the CNN's, whatever the data
        arch = given.get("arch", "cnn")
        return f"tagger-{given.get('dataset', 'multidigit')}" + ("-mlp" if arch == "mlp" else "")

    def prepare(self, config: TaggerConfig, device: torch.device) -> Training:
        self.config = config
        self.data = data = load_data(config)
        self.train = train = head(data.train, config.limit_train)
        self.unseen = check_unseen_classes(
            data.labels, train.targets.sum(axis=0).tolist(),
            data.details.get("tags_csv", data.source), config.allow_unseen_classes)
        self.mean, self.std = mean, std = channel_statistics(train.images)
        print(f"tagger {config.arch} on {data.source}: {len(train)} train / "
              f"{len(data.validation)} validation / {len(data.test)} test images of "
              f"{data.image_shape}, {data.num_labels} labels, "
              f"{train.targets.sum(1).mean():.2f} per training image; device {device}, "
              f"seed {config.seed}")
        model = build_tagger(config.arch, data.image_shape, data.num_labels, config.hidden,
                             config.channels, config.activation, config.dropout)
        init_output_bias(model, train.targets.mean(axis=0))
        # the module trained is the module exported: normalisation in, sigmoid out
        self.graph = graph = ClassifierGraph(model, mean, std, head="sigmoid").to(device)
        pos_weight = balancing_pos_weight(train.targets, config.max_pos_weight).to(device) \
            if config.pos_weight == "auto" else None
        # batches stay uint8 until they reach the graph
        x_train = torch.from_numpy(train.images).to(device)
        y_train = torch.from_numpy(train.targets.astype(np.float32)).to(device)
        x_val, y_val = torch.from_numpy(data.validation.images).to(device), data.validation.targets

        def step(graph: ClassifierGraph, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
            x, y = batch
            if config.hflip:
                # tags of a photo survive mirroring; the RNG is the run's seeded global one
                mirror = torch.rand(len(x), device=x.device) < 0.5
                x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
            _, logits = graph(x.float())
            return StepOutput(binary_cross_entropy(logits, y, pos_weight), len(y))

        def evaluate(graph: ClassifierGraph) -> dict[str, float]:
            probs, logits = predict(graph, x_val)
            # plain BCE, whatever pos_weight: it is what early stopping and the exported
            # probabilities are judged by
            loss = binary_cross_entropy(logits, torch.from_numpy(y_val.astype(np.float32)))
            at_half = decision_metrics(decide(probs.numpy(), 0.5), y_val)
            return {"loss": loss.item(), "micro_f1": at_half["micro_f1"],
                    "exact": at_half["exact_match"],
                    "map": ranking_metrics(probs.numpy(), y_val)["map"]}

        return Training(graph, step, ShuffledBatches((x_train, y_train), config.batch_size,
                                                     config.seed), evaluate)

    def publish(self, folder: Path, result: TrainResult) -> Publication:
        config, data, train = self.config, self.data, self.train
        onnx_path, parity = export_image_model(self.graph, folder, data.image_shape,
                                               data.test.images, config.parity_tolerance)
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
        metrics = {
            "split": "test", "n_test": report["n"],
            **{k: v for k, v in report.items() if k != "n"},
            "thresholds": "per label, max F1 over 0.01..0.99 on the validation split",
            # optimistic for the decision figures: the thresholds were tuned on this split
            "validation": {"n": len(data.validation), "thresholds_tuned_here": True,
                           **validation},
            "evaluated_with": "onnxruntime CPUExecutionProvider on the exported model.onnx",
        }
        # light digits on dark, as MNIST; photos are resized
        look = {"background": "black"} if config.dataset == "multidigit" else \
            {"resize": "bilinear"}
        sections = {
            "task": "tag",
            **image_model_sections(data.image_shape, data.num_labels, data.color,
                                   self.mean, self.std, **look),
            "labels": list(data.labels), "thresholds": [float(t) for t in thresholds],
            "metrics": metrics, "serving": {"max_batch_size": SERVING_MAX_BATCH},
        }
        training = {
            "unseen_classes": self.unseen,
            "data": {"source": data.source, "train": len(train),
                     "validation": len(data.validation), "test": len(data.test),
                     "train_label_counts": dict(zip(data.labels, train.targets.sum(0).tolist(),
                                                    strict=True)),
                     **data.details}}
        return Publication(sections, parity, summary(metrics, result, parity.max_abs_diff)
                           + "\n" + format_report(report), training)


def load_data(config: TaggerConfig) -> TaggingDataset:
    if config.dataset == "folder":
        if config.data_dir is None:
            raise DataError("--dataset folder needs --data-dir: a folder of images with "
                            "its tags.csv")
        return load_tagging_folder(config.data_dir, config.tags_csv,
                                   (config.image_size, config.image_size), config.val_fraction,
                                   config.test_fraction)
    digits, made = canvases(config, config.canvas_size)
    return made.as_tagging(digits.source)


@torch.no_grad()
def predict(graph: ClassifierGraph, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, logits) on the CPU for uint8 pixels, in eval mode and in chunks."""
    was_training = graph.training
    graph.eval()
    outputs = [graph(pixels[i:i + EVAL_BATCH].float()) for i in range(0, len(pixels), EVAL_BATCH)]
    graph.train(was_training)
    return (torch.cat([p for p, _ in outputs]).cpu(), torch.cat([z for _, z in outputs]).cpu())


def summary(m: dict[str, Any], result: TrainResult, parity: float) -> str:
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
        f"parity max |diff| {parity:.2e}",
    ])
