"""The Open Inference Protocol (KServe v2) as both of its front ends speak it: version strings,
input checks from tensor headers, requested outputs, the classification extension, and the
metadata, configuration, statistics and repository answers.

The gRPC service sends these messages as they are; the REST service sends the same messages
as JSON, so both front ends answer alike by construction.
"""

from __future__ import annotations

import asyncio
import re
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any, NamedTuple

import numpy as np

from serving.api.generated.inference import grpc_service_pb2 as pb
from serving.api.generated.inference import model_config_pb2 as mc
from serving.errors import FailedPrecondition, InvalidInput, ModelNotFound
from serving.oip.classification import classification_strings
from serving.oip.tensors import DATATYPE_OF_MANIFEST, NUMPY_OF
from serving.preprocess.tensors import (
    MAX_DIMENSION,
    PIXEL_RANGE,
    check_batch_size,
    element_count,
)
from serving.repository import TensorSpec, model_names, version_numbers
from serving.repository.triton_config import DEFAULT_MAX_BATCH_SIZE, TRITON_TYPES
from serving.runners.base import Duration, Parameters, Runner, RunnerStats, Tensors
from serving.services.context import ServerContext

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["classification", "model_configuration", "statistics", "model_repository",
              "binary_tensor_data"]
CANONICAL_VERSION = re.compile(r"[1-9][0-9]{0,17}")


def server_version() -> str:
    try:
        return package_version("smallserve")
    except PackageNotFoundError:
        return "0"


def server_metadata() -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(name="smallserve", version=server_version(),
                                     extensions=EXTENSIONS)


def parse_version(text: str) -> int:
    """A request's version string: "" is the latest; otherwise a canonical positive integer
    ("01", "+1", " 1" are refused rather than read as 1)."""
    if not text:
        return 0
    if not CANONICAL_VERSION.fullmatch(text):
        raise InvalidInput(f"model version must be a positive integer without sign or leading "
                           f"zeros, got {text[:40]!r}")
    return int(text)


async def model_runner(ctx: ServerContext, name: str, version: str) -> Runner:
    if not name:
        raise InvalidInput("a model name is required")
    return await ctx.runner(name, parse_version(version))


def model_ready(ctx: ServerContext, name: str, version: str) -> bool:
    return ctx.ready and ctx.registry.lookup(name, parse_version(version)) is not None


class InputHeader(NamedTuple):
    """What a request says of one input before any of its elements is read."""

    name: str
    datatype: str
    shape: list[int]


def check_input_headers(runner: Runner, headers: list[InputHeader], max_batch_size: int) -> None:
    """Names, datatypes, shapes and the batch size, checked from the headers alone, so a bad
    or oversized request is refused before its contents are decoded."""
    specs = runner.input_spec_map
    seen: set[str] = set()
    for header in headers:
        spec = specs.get(header.name)
        if spec is None:
            raise InvalidInput(f"unexpected input {header.name!r}; model {runner.name} takes "
                               f"{sorted(specs)}")
        if header.name in seen:
            raise InvalidInput(f"input {header.name!r} is given twice")
        seen.add(header.name)
        _check_header(header, spec)
    missing = sorted(set(specs) - seen)
    if missing:
        raise InvalidInput(f"missing input {', '.join(repr(m) for m in missing)} for model "
                           f"{runner.name}")
    sizes = {h.shape[0] for h in headers}
    if len(sizes) != 1:
        raise InvalidInput(f"inputs disagree on the batch size: {sorted(sizes)}")
    check_batch_size(sizes.pop(), max_batch_size)


def _check_header(header: InputHeader, spec: TensorSpec) -> None:
    shape = header.shape
    if shape and header.datatype == DATATYPE_OF_MANIFEST[spec.dtype] \
            and len(shape) == len(spec.shape) and min(shape) >= 0 \
            and max(shape) <= MAX_DIMENSION \
            and all(want in (-1, got) for want, got in zip(spec.shape, shape, strict=True)):
        return  # the common case, in one pass; the checks below say what is wrong
    what = f"input {header.name!r}"
    if header.datatype not in NUMPY_OF:
        raise InvalidInput(f"{what}: unknown datatype {header.datatype[:40]!r}")
    expected = DATATYPE_OF_MANIFEST[spec.dtype]
    if header.datatype != expected:
        contract = f" ({PIXEL_RANGE})" if spec.dtype == "uint8" else ""
        raise InvalidInput(f"{what}: datatype {header.datatype}, the model expects "
                           f"{expected}{contract}")
    element_count(header.shape, what)
    if len(header.shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, header.shape, strict=True)):
        raise InvalidInput(f"{what}: shape {header.shape} does not match the model's "
                           f"{spec.shape}")


def check_values(inputs: Tensors) -> None:
    """What only the decoded contents can show."""
    for name, array in inputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"input {name!r}: contains NaN or Inf")


def requested_outputs(runner: Runner,
                      asked: list[tuple[str, int | None]]) -> list[tuple[str, int]]:
    """(output name, classification k or 0) in the order the client asked for them; every
    output when it asked for none."""
    declared = runner.output_names
    if not asked:
        return [(name, 0) for name in declared]
    wanted = []
    for name, k in asked:
        if name not in declared:
            raise InvalidInput(f"unknown output {name[:100]!r}; model {runner.name} has "
                               f"{declared}")
        if k is not None and k < 1:
            raise InvalidInput(f"output {name!r}: classification must be at least 1")
        wanted.append((name, k or 0))
    return wanted


async def infer(ctx: ServerContext, runner: Runner, inputs: Tensors, parameters: Parameters,
                wanted: list[tuple[str, int]], deadline: float | None,
                caller: str = "") -> list[tuple[str, np.ndarray]]:
    """One ModelInfer call through the one inference path, with the classification extension
    applied to the outputs that asked for it."""
    check_values(inputs)
    results = await ctx.infer(runner, inputs, parameters, list(dict.fromkeys(
        name for name, _ in wanted)), deadline, caller)
    outputs = []
    for name, k in wanted:
        array = results[name]
        if k:
            labels = runner.manifest.labels if name == "probabilities" else None
            array = classification_strings(array, k, labels)
        outputs.append((name, array))
    return outputs


def int_parameter(value: Any, what: str) -> int:
    """An integer request parameter, sent as a number or as a decimal string."""
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be an integer parameter")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise InvalidInput(f"{what} must be an integer parameter")


def model_metadata(ctx: ServerContext, runner: Runner) -> pb.ModelMetadataResponse:
    loaded = ctx.registry.models().get(runner.name)
    versions = sorted(loaded.runners) if loaded else [runner.version]
    return pb.ModelMetadataResponse(
        name=runner.name, versions=[str(v) for v in versions], platform=PLATFORM,
        inputs=[_tensor_metadata(t) for t in runner.input_specs],
        outputs=[_tensor_metadata(t) for t in runner.output_specs])


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=DATATYPE_OF_MANIFEST[spec.dtype], shape=spec.shape)


def model_config(runner: Runner) -> mc.ModelConfig:
    """The model as this server takes it: the tensors a call sends and may ask for (the
    pixel contract, not the graph's float input), with the task and input range as
    parameters."""
    manifest = runner.manifest
    max_batch = int(manifest.serving.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE))
    on_gpu = bool(runner.providers) and runner.providers[0] == "CUDAExecutionProvider"
    kind = mc.ModelInstanceGroup.KIND_GPU if on_gpu else mc.ModelInstanceGroup.KIND_CPU
    parameters = {"task": mc.ModelParameter(string_value=manifest.task)}
    if any(t.dtype == "uint8" for t in runner.input_specs):
        parameters["input_range"] = mc.ModelParameter(string_value=PIXEL_RANGE)
    config = mc.ModelConfig(
        name=manifest.name, platform=PLATFORM, backend="onnxruntime",
        max_batch_size=max_batch,
        version_policy=mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=1)),
        instance_group=[mc.ModelInstanceGroup(kind=kind, count=1)],
        default_model_filename=manifest.graphs.get("model", ""), parameters=parameters)
    for t in runner.input_specs:
        config.input.append(mc.ModelInput(name=t.name, data_type=_triton_type(t.dtype),
                                          dims=t.shape[1:]))
    for t in runner.output_specs:
        config.output.append(mc.ModelOutput(
            name=t.name, data_type=_triton_type(t.dtype), dims=t.shape[1:],
            label_filename="labels.txt" if t.name == "probabilities" and manifest.labels
            else ""))
    return config


def _triton_type(dtype: str) -> Any:
    return mc.DataType.Value(TRITON_TYPES[dtype])


def statistics(ctx: ServerContext, name: str, version_text: str) -> pb.ModelStatisticsResponse:
    ctx.check_ready()
    models = ctx.registry.models()
    if name and name not in models:
        raise ModelNotFound(f"unknown model {name[:200]!r}")
    version = parse_version(version_text)
    stats = []
    for model_name, model in sorted(models.items()):
        if name and model_name != name:
            continue
        for v, runner in sorted(model.runners.items()):
            if version and v != version:
                continue
            stats.append(_statistics(model_name, v, runner.stats.snapshot()))
    if version and not stats:
        raise ModelNotFound(f"model {name!r} has no loaded version {version}")
    return pb.ModelStatisticsResponse(model_stats=stats)


def _statistics(name: str, version: int, stats: RunnerStats) -> pb.ModelStatistics:
    def duration(d: Duration) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=d.count, ns=d.ns)

    return pb.ModelStatistics(
        name=name, version=str(version), last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count, execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=duration(stats.success), fail=duration(stats.failure),
            queue=duration(stats.queue), compute_infer=duration(stats.compute)))


async def load_model(ctx: ServerContext, name: str) -> Runner:
    """RepositoryModelLoad: the newest valid version of a model, loaded now (explicit model
    control only: in poll mode the repository decides what is served)."""
    _check_explicit(ctx, "load")
    if not name:
        raise InvalidInput("a model name is required")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ctx.registry.load, name)
    return await ctx.runner(name, 0)


async def unload_model(ctx: ServerContext, name: str) -> None:
    _check_explicit(ctx, "unload")
    if not name:
        raise InvalidInput("a model name is required")
    await asyncio.get_running_loop().run_in_executor(None, ctx.registry.unload, name)


def _check_explicit(ctx: ServerContext, what: str) -> None:
    if ctx.registry.model_control != "explicit":
        raise FailedPrecondition(f"model {what} needs --model-control explicit; this server "
                                 "polls its repository")


def repository_index(ctx: ServerContext, ready_only: bool) -> pb.RepositoryIndexResponse:
    registry = ctx.registry
    loaded, failures = registry.models(), registry.failures()
    index = []
    for name in model_names(registry.repository):
        for v in version_numbers(registry.repository / name):
            ready = name in loaded and v in loaded[name].runners
            if ready_only and not ready:
                continue
            reason = failures.get((name, v), "" if ready else "not loaded")
            index.append(pb.RepositoryIndexResponse.ModelIndex(
                name=name, version=str(v), state="READY" if ready else "UNAVAILABLE",
                reason=reason))
    return pb.RepositoryIndexResponse(models=index)
