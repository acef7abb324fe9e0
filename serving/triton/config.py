"""config.pbtxt of the Triton form: the python-backend model of any task, and the dynamic
batching both forms get.

The python-backend model declares the tensors a call sends and may ask for, as this server
declares them (the runner's specs: UINT8 pixels, BYTES texts and images), so Triton checks names,
datatypes and shapes before a request reaches the model. A tensor with only the batch axis
(texts, translations, lengths) goes as [N, 1], Triton's form for one element per batch row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from serving.batching import BatchingConfig
from serving.preprocess.tensors import PIXEL_RANGE
from serving.repository import Manifest
from serving.repository.triton_config import max_batch_size, tensor_list
from serving.runners.base import Runner
from serving.triton.backend import THREADS_PARAMETER

PYTHON_MODEL_FILE = "model.py"
PATH_PARAMETER = "smallserve_path"
# Triton's own: a conda-pack'd environment the python backend unpacks and runs the model in
EXECUTION_ENV_PARAMETER = "EXECUTION_ENV_PATH"


@dataclass(frozen=True)
class PythonModelOptions:
    """What a python-backend model's config.pbtxt says beyond the model itself."""

    smallserve_path: str = ""  # a folder holding the serving package ("": it is installed)
    instances: int = 1  # Triton model instances (stub processes)
    intra_op_threads: int = 0  # onnxruntime threads per operator (0: one per core)
    execution_env: str = ""  # an EXECUTION_ENV_PATH holding the serving package and its needs


def dynamic_batching(manifest: Manifest) -> str:
    """Triton's dynamic batcher with this server's queue delay (the manifest's own, if any)."""
    config = BatchingConfig().for_model(manifest.serving.get("dynamic_batching", {}))
    return f"dynamic_batching {{ max_queue_delay_microseconds: {config.max_queue_delay_us} }}"


def render_python_config(runner: Runner, options: PythonModelOptions) -> str:
    """config.pbtxt of a python-backend model running `runner`'s version."""
    manifest = runner.manifest
    parameters = {"task": manifest.task}
    if any(t.dtype == "uint8" for t in runner.input_specs):
        parameters["input_range"] = PIXEL_RANGE
    if options.smallserve_path:
        parameters[PATH_PARAMETER] = options.smallserve_path
    if options.execution_env:
        parameters[EXECUTION_ENV_PARAMETER] = options.execution_env
    if options.intra_op_threads:
        parameters[THREADS_PARAMETER] = str(options.intra_op_threads)
    lines = [
        f"name: {_quoted(manifest.name)}",
        'backend: "python"',
        f"max_batch_size: {max_batch_size(manifest)}",
        tensor_list("input", runner.input_specs, []),
        tensor_list("output", runner.output_specs, manifest.labels),
        dynamic_batching(manifest),
        # the runner picks onnxruntime's providers itself (CUDA when present)
        f"instance_group [ {{ kind: KIND_CPU count: {options.instances} }} ]",
        "version_policy: { latest: { num_versions: 1 } }",
    ]
    lines += [f"parameters: {{ key: {_quoted(k)} value: {{ string_value: {_quoted(v)} }} }}"
              for k, v in parameters.items()]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    # JSON's escapes of quotes, backslashes and control characters are protobuf text's too
    return json.dumps(text, ensure_ascii=False)
