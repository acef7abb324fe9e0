"""config.pbtxt for single-graph models, so Triton can serve the same repository."""

from __future__ import annotations

from serving.repository.manifest import Manifest, TensorSpec

TRITON_TYPES = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8",
    "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL", "bytes": "TYPE_STRING",
}
DEFAULT_MAX_BATCH_SIZE = 256


def render_triton_config(manifest: Manifest) -> str | None:
    """Text of config.pbtxt, or None for models Triton cannot run as one graph."""
    if set(manifest.graphs) != {"model"}:
        return None
    max_batch = int(manifest.serving.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE))
    lines = [
        f'name: "{manifest.name}"',
        'platform: "onnxruntime_onnx"',
        f'default_model_filename: "{manifest.graphs["model"]}"',
        f"max_batch_size: {max_batch}",
    ]
    lines.append(_tensor_list("input", manifest.inputs, []))
    lines.append(_tensor_list("output", manifest.outputs, manifest.labels))
    lines.append("version_policy: { latest: { num_versions: 1 } }")
    return "\n".join(lines) + "\n"


def _tensor_list(kind: str, specs: list[TensorSpec], labels: list[str]) -> str:
    blocks = []
    for spec in specs:
        dims = ", ".join(str(d) for d in spec.shape[1:])  # Triton leaves out the batch axis
        block = (f'    name: "{spec.name}"\n    data_type: {TRITON_TYPES[spec.dtype]}\n'
                 f"    dims: [ {dims} ]\n")
        if labels and spec.name == "probabilities":
            block += '    label_filename: "labels.txt"\n'
        blocks.append("  {\n" + block + "  }")
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]"
