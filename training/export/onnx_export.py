"""Export a torch module to ONNX with dynamic axes, then check the file.

Generic on purpose: the classifier graph, the tagger and the encoder / decoder-step graphs of the
sequence models all go through here.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

EXPORTERS = ("dynamo", "legacy")


class ExportError(RuntimeError):
    """The exported graph is not what was asked for."""


def export_onnx(module: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
                input_names: Sequence[str], output_names: Sequence[str],
                dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
                opset_version: int | None = None, external_data: bool = False,
                exporter: str = "dynamo",
                output_axes: Mapping[str, Mapping[int, str]] | None = None) -> Path:
    """Export module(*example_inputs) to path and verify it with the ONNX checker.

    exporter "dynamo" is torch.export's (torch.onnx's default); "legacy" is the TorchScript
    tracer (dynamo=False), which the recurrent graphs of the sequence models use (see
    training/export/seq2seq_graphs.py for why). output_axes names the outputs' dynamic axes
    for the legacy exporter, which otherwise labels them with generated names (the dynamo
    exporter derives them from the inputs').

    dynamic_axes maps an input name to {axis: symbolic name}; inputs sharing a symbolic name
    (e.g. "batch") share one dimension. Example inputs should be at least 2 long on every
    dynamic axis: the exporter specialises axes whose example size is 0 or 1. Weights stay
    inside the one file unless external_data (needed only past protobuf's 2 GB limit).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    path = Path(path)
    dynamic_axes = dynamic_axes or {}
    unknown = set(dynamic_axes) - set(input_names)
    if unknown:
        raise ValueError(f"dynamic_axes names unknown inputs: {sorted(unknown)}")
    dims: dict[str, torch.export.Dim] = {}
    dynamic_shapes = tuple(
        {axis: dims.setdefault(sym, torch.export.Dim(sym)) for axis, sym in
         dynamic_axes.get(name, {}).items()} or None
        for name in input_names)
    module.eval()
    with warnings.catch_warnings(), _quiet_logger("torch.onnx"), torch.no_grad():
        # the exporter warns about torchvision ops it cannot register and pytree deprecations;
        # neither concerns these graphs, and they would bury the training output
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(module, tuple(example_inputs), str(path),
                              input_names=list(input_names), output_names=list(output_names),
                              dynamic_shapes=dynamic_shapes, opset_version=opset_version,
                              external_data=external_data, dynamo=True, verbose=False)
        else:
            torch.onnx.export(module, tuple(example_inputs), str(path),
                              input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes={k: dict(v) for k, v in
                                            {**dynamic_axes, **(output_axes or {})}.items()},
                              opset_version=opset_version, dynamo=False, verbose=False)
    check_onnx(path, input_names, output_names, dynamic_axes)
    return path


def check_onnx(path: Path, input_names: Sequence[str], output_names: Sequence[str],
               dynamic_axes: Mapping[str, Mapping[int, str]] | None = None) -> onnx.ModelProto:
    """ONNX checker plus what the checker cannot know: names and which axes stayed dynamic."""
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)
    graph_inputs = {i.name: i for i in model.graph.input}
    graph_outputs = [o.name for o in model.graph.output]
    if list(graph_inputs) != list(input_names):
        raise ExportError(f"{path}: inputs are {list(graph_inputs)}, expected {list(input_names)}")
    if graph_outputs != list(output_names):
        raise ExportError(f"{path}: outputs are {graph_outputs}, expected {list(output_names)}")
    for name, axes in (dynamic_axes or {}).items():
        shape = graph_inputs[name].type.tensor_type.shape.dim
        for axis in axes:
            if shape[axis].HasField("dim_value"):
                raise ExportError(f"{path}: axis {axis} of input {name!r} was fixed to "
                                  f"{shape[axis].dim_value} instead of staying dynamic")
    return model


class _quiet_logger:  # noqa: N801 - used like a function in a with statement
    def __init__(self, name: str, level: int = logging.ERROR) -> None:
        self.logger, self.level = logging.getLogger(name), level

    def __enter__(self) -> None:
        self.saved = self.logger.level
        self.logger.setLevel(self.level)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.saved)
