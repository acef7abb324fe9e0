"""Requests built from numpy/bytes and responses turned into plain dicts (JSON-ready)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from serving.api.generated.smallserve.v1 import model_service_pb2 as pb

NUMPY_TO_PROTO = {np.dtype(np.float32): pb.FLOAT32, np.dtype(np.uint8): pb.UINT8}


def tensor(array: np.ndarray) -> pb.Tensor:
    array = np.asarray(array)
    if array.dtype not in NUMPY_TO_PROTO:
        array = array.astype(np.float32)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return pb.Tensor(dtype=NUMPY_TO_PROTO[array.dtype.newbyteorder("=")],
                     shape=list(array.shape), data=array.tobytes())


def classify_request(model: str, version: int = 0, pixels: np.ndarray | None = None,
                     images: list[bytes] | None = None, top_k: int = 0) -> pb.ClassifyRequest:
    request = pb.ClassifyRequest(model=pb.ModelRef(name=model, version=version), top_k=top_k)
    return _with_images(request, pixels, images)


def tag_request(model: str, version: int = 0, pixels: np.ndarray | None = None,
                images: list[bytes] | None = None, top_k: int = 0,
                threshold: float = 0.0) -> pb.TagRequest:
    request = pb.TagRequest(model=pb.ModelRef(name=model, version=version), top_k=top_k,
                            threshold=threshold)
    return _with_images(request, pixels, images)


def _with_images(request: Any, pixels: np.ndarray | None, images: list[bytes] | None) -> Any:
    if pixels is not None:
        request.pixels.CopyFrom(tensor(pixels))
    if images:
        request.images.extend(images)
    return request


def model_ref(model: str, version: int = 0) -> pb.ModelRef:
    return pb.ModelRef(name=model, version=version)


def models_to_dict(response: pb.ListModelsResponse) -> list[dict[str, Any]]:
    return [{"name": m.name, "task": m.task, "versions": list(m.versions),
             "latest_version": m.latest_version} for m in response.models]


def metadata_to_dict(m: pb.ModelMetadata) -> dict[str, Any]:
    return {"name": m.model.name, "version": m.model.version, "task": m.task,
            "inputs": [_spec(t) for t in m.inputs], "outputs": [_spec(t) for t in m.outputs],
            "labels": list(m.labels), "providers": list(m.providers),
            "manifest": json.loads(m.manifest_json) if m.manifest_json else {},
            "version_errors": [{"version": e.version, "reason": e.reason}
                               for e in m.version_errors]}


def classify_to_dict(r: pb.ClassifyResponse) -> dict[str, Any]:
    return {"model": r.model.name, "version": r.model.version,
            "results": [{"probabilities": list(c.probabilities), "top": _labels(c.top)}
                        for c in r.results]}


def tag_to_dict(r: pb.TagResponse) -> dict[str, Any]:
    return {"model": r.model.name, "version": r.model.version,
            "thresholds": list(r.thresholds),
            "results": [{"probabilities": list(t.probabilities), "tags": _labels(t.tags),
                         "top": _labels(t.top)} for t in r.results]}


def translate_request(model: str, texts: list[str], version: int = 0, beam_size: int = 0,
                      max_length: int = 0) -> pb.TranslateRequest:
    return pb.TranslateRequest(model=pb.ModelRef(name=model, version=version),
                               texts=[t.encode("utf-8") if isinstance(t, str) else t
                                      for t in texts],
                               beam_size=beam_size, max_length=max_length)


def translate_to_dict(r: pb.TranslateResponse) -> dict[str, Any]:
    return {"model": r.model.name, "version": r.model.version,
            "translations": [{
                "text": t.text, "source_pieces": list(t.source_pieces),
                "target_pieces": list(t.target_pieces),
                "token_probabilities": list(t.token_probabilities),
                "attention": np.array(t.attention, np.float32).reshape(
                    len(t.target_pieces), len(t.source_pieces)).tolist(),
                "score": t.score, "finished": t.finished} for t in r.translations]}


def caption_request(model: str, version: int = 0, pixels: np.ndarray | None = None,
                    images: list[bytes] | None = None, beam_size: int = 0,
                    max_length: int = 0) -> pb.CaptionRequest:
    request = pb.CaptionRequest(model=pb.ModelRef(name=model, version=version),
                                beam_size=beam_size, max_length=max_length)
    return _with_images(request, pixels, images)


def caption_to_dict(r: pb.CaptionResponse) -> dict[str, Any]:
    grid = (r.grid_rows, r.grid_cols)
    return {"model": r.model.name, "version": r.model.version, "grid": list(grid),
            "image_size": [r.image_height, r.image_width],
            "captions": [{
                "text": c.text, "tokens": list(c.tokens),
                "token_probabilities": list(c.token_probabilities),
                "attention": np.array(c.attention, np.float32).reshape(
                    len(c.tokens), *grid).tolist(),
                "score": c.score, "finished": c.finished} for c in r.captions]}


def _labels(items: Any) -> list[dict[str, Any]]:
    return [{"index": t.index, "label": t.label, "probability": t.probability} for t in items]


def _spec(t: pb.TensorSpec) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
