"""INT8 dynamic quantisation of an exported graph, with its accuracy and speed measured
against the float graph side by side."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from bench.timing import interleaved


def quantize_int8(float_path: Path, out_path: Path) -> Path:
    """Weights to INT8, activations quantised on the fly (no calibration data needed)."""
    logging.getLogger("root").setLevel(logging.ERROR)  # the quantiser logs every node
    quantize_dynamic(str(float_path), str(out_path), weight_type=QuantType.QInt8)
    return out_path


def compare(float_path: Path, int8_path: Path, feeds: dict[str, np.ndarray],
            score: Callable[[Path], float], repeats: int = 30) -> dict[str, Any]:
    """Score (e.g. held-out accuracy) and median latency at batch 1 and at the full batch of
    both graphs, measured in one interleaved run."""
    sessions = {name: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for name, p in (("float", float_path), ("int8", int8_path))}
    report: dict[str, Any] = {"type": "int8-dynamic", "weight_type": "QInt8"}
    for label, batch in (("batch1", {k: v[:1] for k, v in feeds.items()}), ("batch", feeds)):
        t = interleaved({name: (lambda s=s, b=batch: s.run(None, b))
                         for name, s in sessions.items()}, repeats)
        report[f"float_ms_{label}"] = round(t["float"].median_ms, 4)
        report[f"int8_ms_{label}"] = round(t["int8"].median_ms, 4)
        report[f"speedup_{label}"] = round(t["float"].median_ms / t["int8"].median_ms, 3)
    report["batch"] = int(next(iter(feeds.values())).shape[0])
    outputs = {name: s.run(None, feeds)[0] for name, s in sessions.items()}
    report["max_abs_diff_vs_float"] = float(np.abs(outputs["float"] - outputs["int8"]).max())
    report["float_score"], report["int8_score"] = score(float_path), score(int8_path)
    report["score_change"] = report["int8_score"] - report["float_score"]
    return report
