"""What the inspector shows of each model beyond the Open Inference Protocol: the manifest's
task, labels, thresholds, geometry, decoding defaults, metrics and parity, and why versions were
refused. Read from the registry's memory only (no file is read on the request path)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from serving.oip.tensors import DATATYPE_OF_MANIFEST
from serving.repository import TensorSpec

if TYPE_CHECKING:
    from serving.runners.base import Runner
    from serving.services.context import ServerContext

# manifest sections the page reads; training configs and file lists stay on the server
PREPROCESSING_KEYS = ("channels", "height", "width", "color")
DECODING_KEYS = ("default_beam_size", "max_length", "max_length_ratio", "max_length_offset")


def describe_models(ctx: ServerContext) -> dict[str, Any]:
    """Every loaded or refused model: its served version's manifest and its refused versions
    (in explicit model control, models not loaded are not listed)."""
    registry = ctx.registry
    loaded, failures = registry.models(), registry.failures()
    errors: dict[str, list[dict[str, Any]]] = {}
    for (name, version), reason in sorted(failures.items()):
        errors.setdefault(name, []).append({"version": version, "reason": reason})
    names = sorted(set(loaded) | set(errors))
    models = []
    for name in names:
        model = loaded.get(name)
        entry: dict[str, Any] = {"name": name, "version_errors": errors.get(name, [])}
        if model is None:  # every version refused: nothing serves, the errors say why
            entry.update(served_version=None, loaded_versions=[], task="")
        else:
            entry.update(describe_runner(model.runners[model.latest]),
                         loaded_versions=sorted(model.runners))
        models.append(_finite(entry))
    return {"ready": ctx.ready, "models": models}


def describe_runner(runner: Runner) -> dict[str, Any]:
    m = runner.manifest
    return {
        "served_version": runner.version, "task": m.task,
        "inputs": [_tensor(t) for t in runner.input_specs],
        "outputs": [_tensor(t) for t in runner.output_specs],
        "labels": m.labels, "thresholds": m.thresholds,
        "preprocessing": {k: v for k, v in _section(m.preprocessing).items()
                          if k in PREPROCESSING_KEYS},
        "grid": _section(m.grid),
        "decoding": {k: v for k, v in _section(m.decoding).items() if k in DECODING_KEYS},
        "limits": _section(m.limits), "metrics": m.metrics, "parity": m.parity,
        "created_at": m.created_at,
    }


def _section(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """A typed manifest section as its JSON object; {} where the task has none."""
    return {} if section is None else dict(section)


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": DATATYPE_OF_MANIFEST[spec.dtype],
            "shape": spec.shape}


def _finite(value: Any) -> Any:
    """NaN and infinities as null: a manifest may hold them (Python's json writes them), but
    they are not JSON and a browser's JSON.parse refuses the whole answer."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
