"""Malformed OIP requests, built with the standard client's own protos, get INVALID_ARGUMENT."""

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

PIXELS = np.zeros((2, 1, 28, 28), np.uint8)


def infer_request(**changes):
    request = pb.ModelInferRequest(model_name="mnist")
    tensor = request.inputs.add(name="pixels", datatype="UINT8", shape=list(PIXELS.shape))
    request.raw_input_contents.append(PIXELS.tobytes())
    for key, value in changes.items():
        value(request, tensor) if key == "edit" else setattr(request, key, value)
    return request


def call(target, request):
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)


def shrink(request, tensor):
    request.raw_input_contents[0] = PIXELS.tobytes()[:-1]


def drop_input(request, tensor):
    del request.inputs[:]
    del request.raw_input_contents[:]


def scaled_floats(request, tensor):
    """What a torchvision-minded client sends: FP32 scaled to 0..1."""
    tensor.datatype = "FP32"
    request.raw_input_contents[0] = (PIXELS.astype(np.float32) / 255).tobytes()


def raw_and_typed(request, tensor):
    tensor.contents.uint_contents.extend(PIXELS.ravel().tolist())


def wrong_shape(request, tensor):
    del tensor.shape[:]
    tensor.shape.extend([2, 28, 28])
    request.raw_input_contents[0] = PIXELS.tobytes()


def typed_count_mismatch(request, tensor):
    del request.raw_input_contents[:]
    tensor.contents.uint_contents.extend([0] * 10)


def unknown_input(request, tensor):
    tensor.name = "image"


def unknown_output(request, tensor):
    request.outputs.add(name="embedding")


def version_with_leading_zero(request, tensor):
    request.model_version = "01"


def bad_classification(request, tensor):
    out = request.outputs.add(name="probabilities")
    out.parameters["classification"].string_param = "three"


@pytest.mark.parametrize("edit, words", [
    (shrink, "bytes"),
    (drop_input, "missing input 'pixels'"),
    (scaled_floats, "datatype FP32, the model expects UINT8 (UINT8 values 0..255"),
    (raw_and_typed, "contents must be empty"),
    (wrong_shape, "shape"),
    (typed_count_mismatch, "needs 1568 values"),
    (unknown_input, "unexpected input 'image'"),
    (unknown_output, "unknown output 'embedding'"),
    (version_with_leading_zero, "without sign or leading zeros"),
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
    request.inputs[0].contents.uint_contents.extend(PIXELS.ravel().tolist())
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
    big = np.zeros((300, 1, 28, 28), np.uint8)
    request = pb.ModelInferRequest(model_name="mnist")
    request.inputs.add(name="pixels", datatype="UINT8", shape=list(big.shape))
    request.raw_input_contents.append(big.tobytes())
    with pytest.raises(grpc.RpcError) as caught:
        call(oip_server.target, request)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
