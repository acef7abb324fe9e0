"""The project's own API: smallserve.v1.ModelService."""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
import numpy as np

from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.errors import InvalidInput
from serving.preprocess.tensors import check_batch_size, tensor_from_bytes
from serving.preprocess.text import decode_texts
from serving.runners import (
    CaptionerRunner,
    ClassifierRunner,
    Runner,
    TaggerRunner,
    TranslatorRunner,
)
from serving.runners.captioner import CaptionCall
from serving.runners.image import ImageInput, ImageRunner, LabelProbability
from serving.runners.translator import TranslationCall
from serving.services.context import ServerContext, grpc_errors

PROTO_DTYPES = {pb.FLOAT32: np.dtype(np.float32), pb.UINT8: np.dtype(np.uint8)}
R = TypeVar("R", bound=Runner)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ModelService"].full_name


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
            inputs=[pb.TensorSpec(name=t.name, dtype=t.dtype, shape=t.shape) for t in m.inputs],
            outputs=[pb.TensorSpec(name=t.name, dtype=t.dtype, shape=t.shape)
                     for t in m.outputs],
            labels=m.labels, providers=runner.providers, manifest_json=m.to_json(),
            version_errors=[pb.VersionError(version=v, reason=reason) for (name, v), reason
                            in sorted(self.ctx.registry.failures().items(), reverse=True)
                            if name == m.name])

    @grpc_errors
    async def Classify(self, request: pb.ClassifyRequest,
                       context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        runner = _expect(await self.ctx.runner(*_model_ref(request.model)), ClassifierRunner)
        probs = await self._probabilities(runner, request, context)
        return pb.ClassifyResponse(
            model=pb.ModelRef(name=runner.name, version=runner.version),
            results=[pb.Classification(probabilities=row.tolist(), top=_labels(top))
                     for row, top in zip(probs, runner.top_k(probs, request.top_k),
                                         strict=True)])

    @grpc_errors
    async def Tag(self, request: pb.TagRequest,
                  context: grpc.aio.ServicerContext) -> pb.TagResponse:
        runner = _expect(await self.ctx.runner(*_model_ref(request.model)), TaggerRunner)
        thresholds = runner.thresholds(request.threshold)
        probs = await self._probabilities(runner, request, context)
        return pb.TagResponse(
            model=pb.ModelRef(name=runner.name, version=runner.version),
            thresholds=thresholds.tolist(),
            results=[pb.TagResult(probabilities=row.tolist(), tags=_labels(tags),
                                  top=_labels(top))
                     for row, tags, top in zip(probs, runner.tags(probs, thresholds),
                                               runner.top_k(probs, request.top_k),
                                               strict=True)])

    @grpc_errors
    async def Translate(self, request: pb.TranslateRequest,
                        context: grpc.aio.ServicerContext) -> pb.TranslateResponse:
        runner = _expect(await self.ctx.runner(*_model_ref(request.model)), TranslatorRunner)
        if request.beam_size < 0 or request.max_length < 0:
            raise InvalidInput("beam_size and max_length must not be negative")
        check_batch_size(len(request.texts), self.ctx.limits.max_batch_size)
        # checked here, alone: a bad text fails its own call, never a batch it would join
        sources = runner.prepare(decode_texts(request.texts), request.max_length)
        results = await self.ctx.batched(context, runner,
                                         TranslationCall(sources, request.beam_size))
        return pb.TranslateResponse(
            model=pb.ModelRef(name=runner.name, version=runner.version),
            translations=[pb.Translation(
                text=r.text, source_pieces=r.source_pieces, target_pieces=r.target_pieces,
                token_probabilities=r.token_probabilities,
                attention=r.attention.ravel().tolist(), score=r.score, finished=r.finished)
                for r in results])

    @grpc_errors
    async def Caption(self, request: pb.CaptionRequest,
                      context: grpc.aio.ServicerContext) -> pb.CaptionResponse:
        runner = _expect(await self.ctx.runner(*_model_ref(request.model)), CaptionerRunner)
        if request.beam_size < 0 or request.max_length < 0:
            raise InvalidInput("beam_size and max_length must not be negative")
        pixels = await self._pixels(runner, request, context)
        results = await self.ctx.batched(context, runner, CaptionCall(
            pixels, request.beam_size, runner.limit(request.max_length)))
        _, height, width = runner.chw
        return pb.CaptionResponse(
            model=pb.ModelRef(name=runner.name, version=runner.version),
            grid_rows=runner.grid[0], grid_cols=runner.grid[1], image_height=height,
            image_width=width,
            captions=[pb.CaptionResult(
                text=r.text, tokens=r.tokens, token_probabilities=r.token_probabilities,
                attention=r.attention.ravel().tolist(), score=r.score, finished=r.finished)
                for r in results])

    async def _probabilities(self, runner: ImageRunner,
                             request: pb.ClassifyRequest | pb.TagRequest,
                             context: grpc.aio.ServicerContext) -> np.ndarray:
        if request.top_k < 0:
            raise InvalidInput("top_k must not be negative")
        pixels = await self._pixels(runner, request, context)
        results = await self.ctx.infer(context, runner, {runner.input_name: pixels},
                                       ["probabilities"])
        return results["probabilities"]

    async def _pixels(self, runner: ImageInput, request: Any,
                      context: grpc.aio.ServicerContext) -> np.ndarray:
        """Check and decode the request's image batch: a pixel tensor or encoded images."""
        has_pixels, has_images = request.HasField("pixels"), len(request.images) > 0
        if has_pixels == has_images:
            raise InvalidInput("set exactly one of pixels or images")
        n = request.pixels.shape[0] if has_pixels and request.pixels.shape else \
            len(request.images)
        check_batch_size(n, self.ctx.limits.max_batch_size)
        if has_pixels:
            return runner.pixels_from_array(_tensor(request.pixels, "pixels"))
        return await self.ctx.run(context, runner.pixels_from_images, list(request.images))


def _labels(items: list[LabelProbability]) -> list[pb.LabelProbability]:
    return [pb.LabelProbability(index=t.index, label=t.label, probability=t.probability)
            for t in items]


def _model_ref(ref: pb.ModelRef) -> tuple[str, int]:
    if not ref.name:
        raise InvalidInput("model.name is required")
    if ref.version < 0:
        raise InvalidInput("model.version must be 0 (latest) or a version number")
    return ref.name, ref.version


def _expect(runner: Runner, kind: type[R]) -> R:
    if not isinstance(runner, kind):
        raise InvalidInput(f"model {runner.name} is a {runner.manifest.task} model, "
                           f"not a {kind.task} model")
    return runner


def _tensor(t: pb.Tensor, what: str) -> np.ndarray:
    dtype = PROTO_DTYPES.get(t.dtype)
    if dtype is None:
        raise InvalidInput(f"{what}: dtype must be FLOAT32 or UINT8")
    return tensor_from_bytes(t.data, dtype, list(t.shape), what)
