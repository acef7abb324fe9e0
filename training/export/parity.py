"""The export gate: the ONNX file must compute what the PyTorch module computes.

Checked in onnxruntime on real held-out inputs at several batch sizes (which also exercises the
dynamic batch axis); an export whose largest absolute difference exceeds the tolerance fails
before it can be published.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

DEFAULT_TOLERANCE = 1e-4
PROVIDER = "CPUExecutionProvider"
# log_probs of a trained model reach -20 and beyond, from logits of magnitude ~20 whose float32
# rounding (a few ulps of 2e-6 through a 256-long dot product) exceeds 1e-5 on its own: the
# two runtimes' different summation orders measured 1-3e-5 there while every other output
# stays within 2e-6. That rounding enters a whole row at once (log_softmax subtracts the row's
# logsumexp), so it scales with the row's largest magnitude, not each element's: a trained
# captioner's row (log p from -0.5 to -13, after a random token) came out shifted by 3.5e-5
# everywhere, its most probable entries included, which an element-wise rule refused.
# log_probs are held to 1e-5 + 1e-5 * max |log p| of their row.
LOG_PROBS_RTOL = 1e-5
# A photo captioner's memory (36 cells x 128 values from a CNN over 96 px RGB photos) reaches
# magnitudes of 9 and, by the same float32 summation-order rounding, differed by
# 1.1e-5 in a cell whose largest channel was large; canvases and translators stay within 1e-5.
# Image-encoder memory is held to 1e-5 + 1e-5 * max |value| of its cell.
MEMORY_RTOL = 1e-5


class ParityError(RuntimeError):
    """onnxruntime and PyTorch disagree beyond the tolerance."""


@dataclass
class ParityReport:
    max_abs_diff: float
    tolerance: float
    samples: int  # rows compared, summed over all batches
    batch_sizes: list[int]
    per_output: dict[str, float]
    provider: str = PROVIDER
    # output name -> rtol: that output passes where |diff| <= tolerance + rtol * |PyTorch|
    relative_tolerance: dict[str, float] = field(default_factory=dict)

    def manifest_entry(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SequenceParity:
    """Both graphs of a sequence model checked, then greedy decodes of held-out inputs through
    onnxruntime compared token by token with PyTorch's."""

    encoder: ParityReport
    decoder_step: ParityReport
    greedy_inputs: int
    greedy_mismatches: int

    @property
    def max_abs_diff(self) -> float:
        return max(self.encoder.max_abs_diff, self.decoder_step.max_abs_diff)

    def manifest_entry(self) -> dict[str, Any]:
        tol = self.encoder.tolerance
        relative = {**self.encoder.relative_tolerance, **self.decoder_step.relative_tolerance}
        loosened = "".join(f"; <= {tol:g} + {r:g} * max |value| of the row on {name}"
                           for name, r in relative.items())
        return {"max_abs_diff": self.max_abs_diff, "tolerance": tol,
                "criterion": f"|onnxruntime - PyTorch| <= {tol:g}{loosened}; greedy tokens "
                             f"identical",
                "encoder": asdict(self.encoder), "decoder_step": asdict(self.decoder_step)}


def check_parity(module: nn.Module, onnx_path: Path, batches: Sequence[dict[str, np.ndarray]],
                 tolerance: float = DEFAULT_TOLERANCE, provider: str = PROVIDER,
                 batch_axis: int = 0,
                 relative_tolerance: Mapping[str, float] | None = None) -> ParityReport:
    """Run every batch through both and compare every output; raise ParityError beyond tolerance.

    Each batch maps the graph's input names to arrays; the module takes them positionally in the
    graph's input order and returns its outputs in the graph's output order.
    relative_tolerance {output: rtol} loosens the named outputs to tolerance + rtol * the
    largest |value| of the element's row (its last axis), for outputs whose large magnitudes
    carry float32 rounding beyond the absolute tolerance into every element of the row
    (log-probabilities of a wide vocabulary).
    """
    rtol = dict(relative_tolerance or {})
    if not batches:
        raise ValueError("parity needs at least one batch")
    session = ort.InferenceSession(str(onnx_path), providers=[provider])
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    module.eval()
    unknown = set(rtol) - set(output_names)
    if unknown:
        raise ValueError(f"relative_tolerance names unknown outputs: {sorted(unknown)}")
    worst = dict.fromkeys(output_names, 0.0)
    excess = 0.0  # the largest amount by which any element exceeds its allowance
    sizes = []
    for batch in batches:
        feeds = {name: np.ascontiguousarray(batch[name]) for name in input_names}
        got = session.run(output_names, feeds)
        with torch.no_grad():
            expected = module(*(torch.from_numpy(feeds[n]) for n in input_names))
        if isinstance(expected, torch.Tensor):
            expected = (expected,)
        if len(expected) != len(got):
            raise ParityError(f"{onnx_path}: graph has {len(got)} outputs, module "
                              f"returned {len(expected)}")
        for name, g, e in zip(output_names, got, expected, strict=True):
            e = e.detach().cpu().numpy()
            if g.shape != e.shape:
                raise ParityError(f"{onnx_path}: output {name!r} has shape {g.shape} in "
                                  f"onnxruntime but {e.shape} in PyTorch")
            diff = np.abs(g.astype(np.float64) - e.astype(np.float64))
            # NaN compares false with everything: count it as an infinite difference
            diff = np.where(np.isnan(diff), np.inf, diff)
            d = float(diff.max()) if diff.size else 0.0
            worst[name] = max(worst[name], d)
            if diff.size:
                magnitude = np.abs(e.astype(np.float64))
                if magnitude.ndim:
                    magnitude = magnitude.max(axis=-1, keepdims=True)
                allowed = tolerance + rtol.get(name, 0.0) * magnitude
                excess = max(excess, float((diff - allowed).max()))
        sizes.append(int(next(iter(feeds.values())).shape[batch_axis]))
    report = ParityReport(max_abs_diff=max(worst.values()), tolerance=tolerance,
                          samples=sum(sizes), batch_sizes=sizes, per_output=worst,
                          provider=provider, relative_tolerance=rtol)
    if not excess <= 0.0:
        relative = f" + relative {rtol}" if rtol else ""
        raise ParityError(f"{onnx_path}: onnxruntime differs from PyTorch by "
                          f"{report.max_abs_diff:.3g} (per output {worst}), "
                          f"tolerance {tolerance:g}{relative}")
    return report
