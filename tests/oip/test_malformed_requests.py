"""Malformed OIP requests, built with the standard client's own protos, get INVALID_ARGUMENT."""

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

PIXELS = np.zeros((2, 1, 28, 28), np.float32)


def infer_request(**changes):
    request = pb.ModelInferRequest(model_name="mnist")
    tensor = request.inputs.add(name="pixels", datatype="FP32", shape=list(PIXELS.shape))
    request.raw_input_contents.append(PIXELS.tobytes())
    for key, value in changes.items():
        value(request, tensor) if key == "edit" else setattr(request, key, value)
    return request


def call(target, request):
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)


def shrink(request, tensor):
    request.raw_input_contents[0] = PIXELS.tobytes()[:-4]


def drop_input(request, tensor):
    del request.inputs[:]
    del request.raw_input_contents[:]


def wrong_datatype(request, tensor):
    tensor.datatype = "UINT8"
    request.raw_input_contents[0] = PIXELS.astype(np.uint8).tobytes()


def raw_and_typed(request, tensor):
    tensor.contents.fp32_contents.extend(PIXELS.ravel().tolist())


def wrong_shape(request, tensor):
    del tensor.shape[:]
    tensor.shape.extend([2, 28, 28])
    request.raw_input_contents[0] = PIXELS.tobytes()


def typed_count_mismatch(request, tensor):
    del request.raw_input_contents[:]
    tensor.contents.fp32_contents.extend([0.0] * 10)


def unknown_input(request, tensor):
    tensor.name = "image"


def unknown_output(request, tensor):
    request.outputs.add(name="embedding")


def nan_pixels(request, tensor):
    request.raw_input_contents[0] = np.full_like(PIXELS, np.nan).tobytes()


def bad_classification(request, tensor):
    out = request.outputs.add(name="probabilities")
    out.parameters["classification"].string_param = "three"


@pytest.mark.parametrize("edit, words", [
    (shrink, "bytes"),
    (drop_input, "missing input 'pixels'"),
    (wrong_datatype, "datatype UINT8"),
    (raw_and_typed, "contents must be empty"),
    (wrong_shape, "shape"),
    (typed_count_mismatch, "needs 1568 values"),
    (unknown_input, "unexpected input 'image'"),
    (unknown_output, "unknown output 'embedding'"),
    (nan_pixels, "NaN"),
    (bad_classification, "classification"),
])
def test_malformed_request_is_invalid_and_the_server_goes_on(oip_server, edit, words):
    with pytest.raises(grpc.RpcError) as caught:
        call(oip_server.target, infer_request(edit=edit))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in caught.value.details()
    response = call(oip_server.target, infer_request())
    assert response.model_name == "mnist" and len(response.raw_output_contents) == 2


def test_typed_contents_are_accepted(oip_server):
    request = infer_request()
    del request.raw_input_contents[:]
    request.inputs[0].contents.fp32_contents.extend(PIXELS.ravel().tolist())
    typed = call(oip_server.target, request)
    raw = call(oip_server.target, infer_request())
    assert typed.raw_output_contents == raw.raw_output_contents


@pytest.mark.parametrize("name, version, code", [
    ("no-such-model", "", grpc.StatusCode.NOT_FOUND),
    ("mnist", "42", grpc.StatusCode.NOT_FOUND),
    ("mnist", "latest", grpc.StatusCode.INVALID_ARGUMENT),
])
def test_unknown_model_or_version(oip_server, name, version, code):
    with pytest.raises(grpc.RpcError) as caught:
        call(oip_server.target, infer_request(model_name=name, model_version=version))
    assert caught.value.code() == code


def test_batch_above_the_limit_is_resource_exhausted(oip_server):
    big = np.zeros((300, 1, 28, 28), np.float32)
    request = pb.ModelInferRequest(model_name="mnist")
    request.inputs.add(name="pixels", datatype="FP32", shape=list(big.shape))
    request.raw_input_contents.append(big.tobytes())
    with pytest.raises(grpc.RpcError) as caught:
        call(oip_server.target, request)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
