"""The Open Inference Protocol's gRPC form (inference.GRPCInferenceService) on the gRPC port:
a converter between its messages and serving.services.open_inference.

Answers follow what tritonclient reads (raw_output_contents aligned with the outputs list,
BYTES length-prefixed) and errors map as OIP servers map them.
"""

from __future__ import annotations

from typing import Any

import grpc

from serving.api.generated.inference import grpc_service_pb2 as pb
from serving.api.generated.inference import grpc_service_pb2_grpc as pb_grpc
from serving.errors import InvalidInput
from serving.oip.tensors import decode_input, encode_output, has_typed_contents
from serving.runners.base import Tensors
from serving.services import open_inference as oip
from serving.services.context import ServerContext
from serving.services.grpc_status import deadline_of, grpc_errors

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


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
        return pb.ModelReadyResponse(ready=oip.model_ready(self.ctx, request.name,
                                                           request.version))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return oip.server_metadata()

    @grpc_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        runner = await oip.model_runner(self.ctx, request.name, request.version)
        return oip.model_metadata(self.ctx, runner)

    @grpc_errors
    async def ModelConfig(self, request: pb.ModelConfigRequest,
                          context: grpc.aio.ServicerContext) -> pb.ModelConfigResponse:
        runner = await oip.model_runner(self.ctx, request.name, request.version)
        return pb.ModelConfigResponse(config=oip.model_config(runner))

    @grpc_errors
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ModelStatisticsResponse:
        return oip.statistics(self.ctx, request.name, request.version)

    @grpc_errors
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        return oip.repository_index(self.ctx, request.ready)

    @grpc_errors
    async def RepositoryModelLoad(
            self, request: pb.RepositoryModelLoadRequest,
            context: grpc.aio.ServicerContext) -> pb.RepositoryModelLoadResponse:
        await oip.load_model(self.ctx, request.model_name)
        return pb.RepositoryModelLoadResponse()

    @grpc_errors
    async def RepositoryModelUnload(
            self, request: pb.RepositoryModelUnloadRequest,
            context: grpc.aio.ServicerContext) -> pb.RepositoryModelUnloadResponse:
        await oip.unload_model(self.ctx, request.model_name)
        return pb.RepositoryModelUnloadResponse()

    @grpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        runner = await oip.model_runner(self.ctx, request.model_name, request.model_version)
        oip.check_input_headers(runner, [oip.InputHeader(t.name, t.datatype, list(t.shape))
                                         for t in request.inputs],
                                self.ctx.limits.max_batch_size)
        wanted = oip.requested_outputs(runner, [
            (out.name, oip.int_parameter(_value(out.parameters["classification"]),
                                         f"output {out.name!r} classification")
             if "classification" in out.parameters else None) for out in request.outputs])
        parameters = {k: v for k, v in ((k, _value(p)) for k, p in request.parameters.items())
                      if v is not None}
        outputs = await oip.infer(self.ctx, runner, _inputs(request), parameters, wanted,
                                  deadline_of(context), context.peer())
        response = pb.ModelInferResponse(model_name=runner.name,
                                         model_version=str(runner.version), id=request.id)
        for name, array in outputs:
            tensor, raw = encode_output(name, array)
            response.outputs.append(tensor)
            response.raw_output_contents.append(raw)
        return response


def _inputs(request: pb.ModelInferRequest) -> Tensors:
    """The request's inputs decoded (after their headers were checked)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; "
                           "send one per input or none")
    feeds = {}
    for i, tensor in enumerate(request.inputs):
        if raw and has_typed_contents(tensor):
            raise InvalidInput(f"input {tensor.name!r}: contents must be empty when "
                               "raw_input_contents is used")
        feeds[tensor.name] = decode_input(tensor, raw[i] if raw else None)
    return feeds


def _value(parameter: pb.InferParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None
