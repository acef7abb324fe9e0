"""The project's own API, smallserve.v1.ModelService: a converter between its messages and the
one inference path (task-specific fields <-> named tensors and parameters)."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.errors import InvalidInput
from serving.postprocess.labels import LabelProbability, tags, thresholds, top_k
from serving.preprocess.tensors import tensor_from_bytes
from serving.runners.base import Runner, Tensors
from serving.services.context import ServerContext
from serving.services.grpc_status import deadline_of, grpc_errors
from serving.services.open_inference import load_model, unload_model

PROTO_DTYPES = {pb.FLOAT32: np.dtype(np.float32), pb.UINT8: np.dtype(np.uint8)}
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ModelService"].full_name
IMAGE_INPUT = "image"  # as every image runner names its encoded images


class ModelService(pb_grpc.ModelServiceServicer):
    API = "smallserve.v1"

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    @grpc_errors
    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        self.ctx.check_ready()
        return pb.ListModelsResponse(models=[
            pb.ModelSummary(name=name, task=m.task, versions=sorted(m.runners),
                            latest_version=m.latest)
            for name, m in sorted(self.ctx.registry.models().items())])

    @grpc_errors
    async def GetModelMetadata(self, request: pb.GetModelMetadataRequest,
                               context: grpc.aio.ServicerContext) -> pb.ModelMetadata:
        runner = await self.ctx.runner(*_model_ref(request.model))
        m = runner.manifest
        return pb.ModelMetadata(
            model=pb.ModelRef(name=m.name, version=m.version), task=m.task,
            inputs=[pb.TensorSpec(name=t.name, dtype=t.dtype, shape=t.shape)
                    for t in runner.input_specs],
            outputs=[pb.TensorSpec(name=t.name, dtype=t.dtype, shape=t.shape)
                     for t in runner.output_specs],
            labels=m.labels, providers=runner.providers, manifest_json=m.to_json(),
            version_errors=[pb.VersionError(version=v, reason=reason) for (name, v), reason
                            in sorted(self.ctx.registry.failures().items(), reverse=True)
                            if name == m.name])

    @grpc_errors
    async def LoadModel(self, request: pb.LoadModelRequest,
                        context: grpc.aio.ServicerContext) -> pb.LoadModelResponse:
        runner = await load_model(self.ctx, request.name)
        return pb.LoadModelResponse(version=runner.version)

    @grpc_errors
    async def UnloadModel(self, request: pb.UnloadModelRequest,
                          context: grpc.aio.ServicerContext) -> pb.UnloadModelResponse:
        await unload_model(self.ctx, request.name)
        return pb.UnloadModelResponse()

    @grpc_errors
    async def Classify(self, request: pb.ClassifyRequest,
                       context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        runner = await self.ctx.runner(*_model_ref(request.model), task="classify")
        probs = await self._probabilities(runner, request, context)
        ranked = top_k(probs, runner.manifest.labels, request.top_k)
        return pb.ClassifyResponse(
            model=_ref(runner),
            results=[pb.Classification(probabilities=row.tolist(), top=_labels(top))
                     for row, top in zip(probs, ranked, strict=True)])

    @grpc_errors
    async def Tag(self, request: pb.TagRequest,
                  context: grpc.aio.ServicerContext) -> pb.TagResponse:
        runner = await self.ctx.runner(*_model_ref(request.model), task="tag")
        labels = runner.manifest.labels
        cutoffs = thresholds(runner.manifest, request.threshold)
        probs = await self._probabilities(runner, request, context)
        return pb.TagResponse(
            model=_ref(runner), thresholds=cutoffs.tolist(),
            results=[pb.TagResult(probabilities=row.tolist(), tags=_labels(decided),
                                  top=_labels(top))
                     for row, decided, top in zip(probs, tags(probs, cutoffs, labels),
                                                  top_k(probs, labels, request.top_k),
                                                  strict=True)])

    @grpc_errors
    async def Translate(self, request: pb.TranslateRequest,
                        context: grpc.aio.ServicerContext) -> pb.TranslateResponse:
        runner = await self.ctx.runner(*_model_ref(request.model), task="translate")
        texts = np.empty(len(request.texts), dtype=object)
        texts[:] = list(request.texts)
        out = await self.ctx.infer(runner, {"text": texts}, _search_parameters(request), [
            "translation", "source_pieces", "source_lengths", "target_pieces",
            "target_lengths", "token_probabilities", "attention", "scores", "finished"],
            deadline_of(context), context.peer())
        translations = []
        for i, text in enumerate(out["translation"]):
            s, t = int(out["source_lengths"][i]), int(out["target_lengths"][i])
            translations.append(pb.Translation(
                text=text.decode(), source_pieces=_strings(out["source_pieces"][i, :s]),
                target_pieces=_strings(out["target_pieces"][i, :t]),
                token_probabilities=out["token_probabilities"][i, :t].tolist(),
                attention=out["attention"][i, :t, :s].ravel().tolist(),
                score=float(out["scores"][i]), finished=bool(out["finished"][i])))
        return pb.TranslateResponse(model=_ref(runner), translations=translations)

    @grpc_errors
    async def Caption(self, request: pb.CaptionRequest,
                      context: grpc.aio.ServicerContext) -> pb.CaptionResponse:
        runner = await self.ctx.runner(*_model_ref(request.model), task="caption")
        out = await self.ctx.infer(runner, _image_inputs(runner, request),
                                   _search_parameters(request), [
            "caption", "tokens", "caption_lengths", "token_probabilities", "attention",
            "scores", "finished"], deadline_of(context), context.peer())
        captions = []
        for i, text in enumerate(out["caption"]):
            t = int(out["caption_lengths"][i])
            captions.append(pb.CaptionResult(
                text=text.decode(), tokens=_strings(out["tokens"][i, :t]),
                token_probabilities=out["token_probabilities"][i, :t].tolist(),
                attention=out["attention"][i, :t].ravel().tolist(),
                score=float(out["scores"][i]), finished=bool(out["finished"][i])))
        m = runner.manifest
        return pb.CaptionResponse(
            model=_ref(runner), grid_rows=m.grid.rows, grid_cols=m.grid.cols,
            image_height=m.preprocessing.height, image_width=m.preprocessing.width,
            captions=captions)

    async def _probabilities(self, runner: Runner, request: pb.ClassifyRequest | pb.TagRequest,
                             context: grpc.aio.ServicerContext) -> np.ndarray:
        if request.top_k < 0:
            raise InvalidInput("top_k must not be negative")
        out = await self.ctx.infer(runner, _image_inputs(runner, request), {},
                                   ["probabilities"], deadline_of(context))
        return out["probabilities"]


def _image_inputs(runner: Runner, request: Any) -> Tensors:
    """The request's pixel tensor or encoded images as the runner's named inputs."""
    has_pixels, has_images = request.HasField("pixels"), len(request.images) > 0
    if has_pixels == has_images:
        raise InvalidInput("set exactly one of pixels or images")
    if has_images:
        encoded = np.empty(len(request.images), dtype=object)
        encoded[:] = list(request.images)
        return {IMAGE_INPUT: encoded}
    # image graphs name their pixel input in the manifest
    return {runner.manifest.inputs[0].name: _tensor(request.pixels, "pixels")}


def _search_parameters(request: pb.TranslateRequest | pb.CaptionRequest) -> dict[str, int]:
    if request.beam_size < 0 or request.max_length < 0:
        raise InvalidInput("beam_size and max_length must not be negative")
    return {"beam_size": request.beam_size, "max_length": request.max_length}


def _strings(items: np.ndarray) -> list[str]:
    return [x.decode("utf-8") for x in items]


def _labels(items: list[LabelProbability]) -> list[pb.LabelProbability]:
    return [pb.LabelProbability(index=t.index, label=t.label, probability=t.probability)
            for t in items]


def _ref(runner: Runner) -> pb.ModelRef:
    return pb.ModelRef(name=runner.name, version=runner.version)


def _model_ref(ref: pb.ModelRef) -> tuple[str, int]:
    if not ref.name:
        raise InvalidInput("model.name is required")
    if ref.version < 0:
        raise InvalidInput("model.version must be 0 (latest) or a version number")
    return ref.name, ref.version


def _tensor(t: pb.Tensor, what: str) -> np.ndarray:
    dtype = PROTO_DTYPES.get(t.dtype)
    if dtype is None:
        raise InvalidInput(f"{what}: dtype must be FLOAT32 or UINT8")
    return tensor_from_bytes(t.data, dtype, list(t.shape), what)
