"""config.pbtxt for single-graph models, so Triton can serve the same repository, and the
pieces of Triton's model configuration text that other forms of a model share (serving.triton
writes python-backend configs from them)."""

from __future__ import annotations

from serving.repository.graph_io import MODEL, PROBABILITIES
from serving.repository.manifest import Manifest, TensorSpec

TRITON_TYPES = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8",
    "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL", "bytes": "TYPE_STRING",
}
DEFAULT_MAX_BATCH_SIZE = 256
LABELLED_OUTPUT = PROBABILITIES


def max_batch_size(manifest: Manifest) -> int:
    return int(manifest.serving.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE))


def render_triton_config(manifest: Manifest) -> str | None:
    """Text of config.pbtxt, or None for models Triton cannot run as one graph."""
    if set(manifest.graphs) != {MODEL}:
        return None
    lines = [
        f'name: "{manifest.name}"',
        'platform: "onnxruntime_onnx"',
        f'default_model_filename: "{manifest.graphs[MODEL]}"',
        f"max_batch_size: {max_batch_size(manifest)}",
    ]
    lines.append(tensor_list("input", manifest.inputs, []))
    lines.append(tensor_list("output", manifest.outputs, manifest.labels))
    lines.append("version_policy: { latest: { num_versions: 1 } }")
    return "\n".join(lines) + "\n"


def tensor_list(kind: str, specs: list[TensorSpec], labels: list[str]) -> str:
    """An `input [...]` or `output [...]` block; Triton leaves the batch axis out of dims."""
    blocks = []
    for spec in specs:
        dims = spec.shape[1:]
        # a tensor with only the batch axis (one string per row): Triton wants at least one
        # dim, so clients send [N, 1] and the model sees [N]
        reshape = "" if dims else "    reshape: { shape: [ ] }\n"
        block = (f'    name: "{spec.name}"\n    data_type: {TRITON_TYPES[spec.dtype]}\n'
                 f"    dims: [ {', '.join(str(d) for d in dims or [1])} ]\n{reshape}")
        if labels and spec.name == LABELLED_OUTPUT:
            block += '    label_filename: "labels.txt"\n'
        blocks.append("  {\n" + block + "  }")
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]"
