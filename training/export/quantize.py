"""INT8 dynamic quantisation of exported graphs, with score and speed measured against the
float graphs side by side."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from training.timing import interleaved

METHOD = {"type": "int8-dynamic", "weight_type": "QInt8"}


def quantize_int8(float_path: Path, out_path: Path) -> Path:
    """Weights to INT8, activations quantised on the fly (no calibration data needed)."""
    logging.getLogger("root").setLevel(logging.ERROR)  # the quantiser logs every node
    quantize_dynamic(str(float_path), str(out_path), weight_type=QuantType.QInt8)
    return out_path


def quantize_folder(folder: Path, files: Sequence[str], float_folder: Path) -> None:
    """Each graph in `folder` moves to `float_folder`, its INT8 version takes its place."""
    float_folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        float_path = float_folder / name
        shutil.move(folder / name, float_path)
        quantize_int8(float_path, folder / name)


def timed_pair(float_fn: Callable[[], object], int8_fn: Callable[[], object], label: str,
               repeats: int) -> dict[str, float]:
    """Median ms of both, interleaved, and the float / int8 ratio, keyed by `label`."""
    t = interleaved({"float": float_fn, "int8": int8_fn}, repeats)
    f, q = t["float"].median_ms, t["int8"].median_ms
    return {f"float_ms_{label}": round(f, 4), f"int8_ms_{label}": round(q, 4),
            f"speedup_{label}": round(f / q, 3)}


def score_change(float_score: float, int8_score: float) -> dict[str, float]:
    return {"float_score": float_score, "int8_score": int8_score,
            "score_change": int8_score - float_score}


def compare(float_path: Path, int8_path: Path, feeds: dict[str, np.ndarray],
            score: Callable[[Path], float], repeats: int = 30) -> dict[str, Any]:
    """One-graph models: score (e.g. held-out accuracy) and median latency at batch 1 and at
    the full batch of both graphs, measured in one interleaved run."""
    sessions = {name: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for name, p in (("float", float_path), ("int8", int8_path))}
    report: dict[str, Any] = dict(METHOD)
    for label, batch in (("batch1", {k: v[:1] for k, v in feeds.items()}), ("batch", feeds)):
        report.update(timed_pair(lambda b=batch: sessions["float"].run(None, b),
                                 lambda b=batch: sessions["int8"].run(None, b), label, repeats))
    report["batch"] = int(next(iter(feeds.values())).shape[0])
    outputs = {name: s.run(None, feeds)[0] for name, s in sessions.items()}
    report["max_abs_diff_vs_float"] = float(np.abs(outputs["float"] - outputs["int8"]).max())
    report.update(score_change(score(float_path), score(int8_path)))
    return report
