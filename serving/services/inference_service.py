"""The Open Inference Protocol service (inference.GRPCInferenceService) on the same port.

Any single-graph model of the repository is reachable with its graph tensors as the manifest
declares them; answers follow what tritonclient reads (raw_output_contents aligned with the
outputs list, BYTES length-prefixed) and errors map as OIP servers map them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import grpc
import numpy as np

from serving.api.generated.inference import grpc_service_pb2 as pb
from serving.api.generated.inference import grpc_service_pb2_grpc as pb_grpc
from serving.api.generated.inference import model_config_pb2 as mc
from serving.errors import InvalidInput, ModelNotFound
from serving.oip.classification import classification_strings
from serving.oip.tensors import (
    DATATYPE_OF_MANIFEST,
    decode_input,
    encode_output,
    has_typed_contents,
)
from serving.preprocess.tensors import check_batch_size
from serving.repository import Manifest, TensorSpec, model_names, version_numbers
from serving.repository.triton_config import DEFAULT_MAX_BATCH_SIZE, TRITON_TYPES
from serving.runners import Runner
from serving.runners.base import Duration, RunnerStats
from serving.services.context import ServerContext, grpc_errors

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["classification", "model_configuration", "statistics", "model_repository",
              "binary_tensor_data"]


def server_version() -> str:
    try:
        return package_version("smallserve")
    except PackageNotFoundError:
        return "0"


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    API = "oip"

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def ServerLive(self, request: pb.ServerLiveRequest,
                         context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.ctx.ready)

    @grpc_errors
    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        version = _version(request.version)
        ready = self.ctx.ready and self.ctx.registry.lookup(request.name, version) is not None
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="smallserve", version=server_version(),
                                         extensions=EXTENSIONS)

    @grpc_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        runner = await self._runner(request.name, request.version)
        m = runner.manifest
        loaded = self.ctx.registry.models().get(m.name)
        versions = sorted(loaded.runners) if loaded else [m.version]
        return pb.ModelMetadataResponse(
            name=m.name, versions=[str(v) for v in versions], platform=PLATFORM,
            inputs=[_tensor_metadata(t) for t in runner.input_specs],
            outputs=[_tensor_metadata(t) for t in runner.output_specs])

    @grpc_errors
    async def ModelConfig(self, request: pb.ModelConfigRequest,
                          context: grpc.aio.ServicerContext) -> pb.ModelConfigResponse:
        runner = await self._runner(request.name, request.version)
        return pb.ModelConfigResponse(config=model_config(runner.manifest, runner.providers))

    @grpc_errors
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ModelStatisticsResponse:
        self.ctx.check_ready()
        models = self.ctx.registry.models()
        if request.name and request.name not in models:
            raise ModelNotFound(f"unknown model {request.name!r}")
        version = _version(request.version)
        stats = []
        for name, model in sorted(models.items()):
            if request.name and name != request.name:
                continue
            for v, runner in sorted(model.runners.items()):
                if version and v != version:
                    continue
                stats.append(_statistics(name, v, runner.stats.snapshot()))
        if version and not stats:
            raise ModelNotFound(f"model {request.name!r} has no loaded version {version}")
        return pb.ModelStatisticsResponse(model_stats=stats)

    @grpc_errors
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        registry = self.ctx.registry
        loaded, failures = registry.models(), registry.failures()
        index = []
        for name in model_names(registry.repository):
            for v in version_numbers(registry.repository / name):
                ready = name in loaded and v in loaded[name].runners
                if request.ready and not ready:
                    continue
                reason = failures.get((name, v), "" if ready else "not loaded")
                index.append(pb.RepositoryIndexResponse.ModelIndex(
                    name=name, version=str(v), state="READY" if ready else "UNAVAILABLE",
                    reason=reason))
        return pb.RepositoryIndexResponse(models=index)

    @grpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        runner = await self._runner(request.model_name, request.model_version)
        feeds = self._inputs(request, runner)
        wanted = _requested_outputs(request, runner)
        options = runner.parse_options({k: getattr(v, v.WhichOneof("parameter_choice"))
                                        for k, v in request.parameters.items()
                                        if v.WhichOneof("parameter_choice")})
        results = await self.ctx.infer(context, runner, feeds, [name for name, _ in wanted],
                                       options)
        response = pb.ModelInferResponse(model_name=runner.name,
                                         model_version=str(runner.version), id=request.id)
        for name, k in wanted:
            array = results[name]
            if k:
                labels = runner.manifest.labels if name == "probabilities" else None
                array = classification_strings(array, k, labels)
            tensor, raw = encode_output(name, array)
            response.outputs.append(tensor)
            response.raw_output_contents.append(raw)
        return response

    async def _runner(self, name: str, version: str) -> Runner:
        if not name:
            raise InvalidInput("a model name is required")
        return await self.ctx.runner(name, _version(version))

    def _inputs(self, request: pb.ModelInferRequest, runner: Runner) -> dict[str, np.ndarray]:
        manifest = runner.manifest
        raw = list(request.raw_input_contents)
        if raw and len(raw) != len(request.inputs):
            raise InvalidInput(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; "
                               "send one per input or none")
        specs = {t.name: t for t in runner.input_specs}
        feeds: dict[str, np.ndarray] = {}
        for i, tensor in enumerate(request.inputs):
            if tensor.name not in specs:
                raise InvalidInput(f"unexpected input {tensor.name!r}; model {manifest.name} "
                                   f"takes {sorted(specs)}")
            if tensor.name in feeds:
                raise InvalidInput(f"input {tensor.name!r} is given twice")
            if raw and has_typed_contents(tensor):
                raise InvalidInput(f"input {tensor.name!r}: contents must be empty when "
                                   "raw_input_contents is used")
            feeds[tensor.name] = _checked(decode_input(tensor, raw[i] if raw else None),
                                          tensor.datatype, specs[tensor.name])
        missing = sorted(set(specs) - set(feeds))
        if missing:
            raise InvalidInput(f"missing input {', '.join(repr(m) for m in missing)} for model "
                               f"{manifest.name}")
        sizes = {a.shape[0] for a in feeds.values()}
        if len(sizes) != 1:
            raise InvalidInput(f"inputs disagree on the batch size: {sorted(sizes)}")
        check_batch_size(sizes.pop(), self.ctx.limits.max_batch_size)
        return feeds


def _version(text: str) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise InvalidInput(f"model version must be a number, got {text!r}")
    return int(text)


def _checked(array: np.ndarray, datatype: str, spec: TensorSpec) -> np.ndarray:
    what = f"input {spec.name!r}"
    expected = DATATYPE_OF_MANIFEST[spec.dtype]
    if datatype != expected:
        raise InvalidInput(f"{what}: datatype {datatype}, the model expects {expected}")
    if array.ndim != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)):
        raise InvalidInput(f"{what}: shape {list(array.shape)} does not match the model's "
                           f"{spec.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(f"{what}: contains NaN or Inf")
    return array


def _requested_outputs(request: pb.ModelInferRequest,
                       runner: Runner) -> list[tuple[str, int]]:
    """(output name, classification k or 0) in the order the client asked for them."""
    manifest = runner.manifest
    declared = [t.name for t in runner.output_specs]
    if not request.outputs:
        return [(name, 0) for name in declared]
    wanted = []
    for out in request.outputs:
        if out.name not in declared:
            raise InvalidInput(f"unknown output {out.name!r}; model {manifest.name} has "
                               f"{declared}")
        k = 0
        if "classification" in out.parameters:
            param = out.parameters["classification"]
            k = _int_parameter(param, f"output {out.name!r} classification")
            if k < 1:
                raise InvalidInput(f"output {out.name!r}: classification must be at least 1")
        wanted.append((out.name, k))
    return wanted


def _int_parameter(param: pb.InferParameter, what: str) -> int:
    choice = param.WhichOneof("parameter_choice")
    if choice in ("int64_param", "uint64_param"):
        return int(getattr(param, choice))
    if choice == "string_param" and param.string_param.isascii() and \
            param.string_param.isdigit():
        return int(param.string_param)
    raise InvalidInput(f"{what} must be an integer parameter")


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=DATATYPE_OF_MANIFEST[spec.dtype], shape=spec.shape)


def model_config(manifest: Manifest, providers: list[str]) -> mc.ModelConfig:
    max_batch = int(manifest.serving.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE))
    on_gpu = bool(providers) and providers[0] == "CUDAExecutionProvider"
    kind = mc.ModelInstanceGroup.KIND_GPU if on_gpu else mc.ModelInstanceGroup.KIND_CPU
    config = mc.ModelConfig(
        name=manifest.name, platform=PLATFORM, backend="onnxruntime",
        max_batch_size=max_batch,
        version_policy=mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=1)),
        instance_group=[mc.ModelInstanceGroup(kind=kind, count=1)],
        default_model_filename=manifest.graphs.get("model", ""),
        parameters={"task": mc.ModelParameter(string_value=manifest.task)})
    for t in manifest.inputs:
        config.input.append(mc.ModelInput(name=t.name, data_type=_triton_type(t.dtype),
                                          dims=t.shape[1:]))
    for t in manifest.outputs:
        config.output.append(mc.ModelOutput(
            name=t.name, data_type=_triton_type(t.dtype), dims=t.shape[1:],
            label_filename="labels.txt" if t.name == "probabilities" and manifest.labels
            else ""))
    return config


def _triton_type(dtype: str) -> Any:
    return mc.DataType.Value(TRITON_TYPES[dtype])


def _statistics(name: str, version: int, stats: RunnerStats) -> pb.ModelStatistics:
    def duration(d: Duration) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=d.count, ns=d.ns)

    return pb.ModelStatistics(
        name=name, version=str(version), last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count, execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=duration(stats.success), fail=duration(stats.failure),
            queue=duration(stats.queue), compute_infer=duration(stats.compute)))
