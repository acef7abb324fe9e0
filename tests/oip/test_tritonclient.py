"""The standard Triton client, unchanged, against a real server (Open Inference Protocol)."""

import asyncio

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from tests.conftest import SHARED_MNIST
from training.data.idx import read_idx


def pixels_input(images: np.ndarray) -> triton.InferInput:
    x = images.astype(np.uint8)[:, None]
    tensor = triton.InferInput("pixels", list(x.shape), "UINT8")
    tensor.set_data_from_numpy(x)
    return tensor


def in_process(repository, name, images):
    session = ort.InferenceSession(str(repository / name / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"pixels": images.astype(np.float32)[:, None]})[0]


def test_health_metadata_and_config(oip_server):
    client = triton.InferenceServerClient(oip_server.target)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mnist") and client.is_model_ready("mnist", "1")
    assert not client.is_model_ready("no-such-model")
    meta = client.get_model_metadata("mnist", as_json=True)
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "pixels", "datatype": "UINT8",
                               "shape": ["-1", "1", "28", "28"]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "logits"]
    config = client.get_model_config("mnist").config
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 256
    assert list(config.input[0].dims) == [1, 28, 28]
    assert config.output[0].label_filename == "labels.txt"
    assert "0..255" in config.parameters["input_range"].string_value
    server = client.get_server_metadata()
    assert server.name == "smallserve" and "classification" in server.extensions
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "mnist", "version": "1", "state": "READY"} in index


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"needs real MNIST at {SHARED_MNIST}")
def test_infer_real_digits_with_the_mlp(oip_server, oip_repository):
    images = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")[:200]
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")[:200]
    client = triton.InferenceServerClient(oip_server.target)
    result = client.infer("mnist-mlp", [pixels_input(images)], request_id="req-7",
                          outputs=[triton.InferRequestedOutput("probabilities")])
    probs = result.as_numpy("probabilities")
    assert result.get_response().id == "req-7"
    np.testing.assert_allclose(probs, in_process(oip_repository, "mnist-mlp", images),
                               atol=1e-6, rtol=0)
    accuracy = (probs.argmax(1) == labels).mean()
    assert accuracy >= 0.97, accuracy
    assert result.as_numpy("logits") is None  # only what was asked for comes back


def test_classification_parameter_returns_top_3(oip_server, test_digits):
    client = triton.InferenceServerClient(oip_server.target)
    images = test_digits.images[:4]
    result = client.infer("mnist", [pixels_input(images)], outputs=[
        triton.InferRequestedOutput("probabilities", class_count=3)])
    top = result.as_numpy("probabilities")
    assert top.shape == (4, 3) and top.dtype == object
    full = client.infer("mnist", [pixels_input(images)]).as_numpy("probabilities")
    for row, probs in zip(top, full, strict=True):
        values, indices, labels = zip(*(item.decode().split(":") for item in row), strict=True)
        assert [int(i) for i in indices] == list(np.argsort(-probs)[:3])
        assert labels == tuple(str(i) for i in indices)  # MNIST labels are the digits
        np.testing.assert_allclose([float(v) for v in values], np.sort(probs)[::-1][:3],
                                   atol=1e-6)


def test_statistics_count_real_work(oip_server, test_digits):
    client = triton.InferenceServerClient(oip_server.target)
    before = client.get_inference_statistics("mnist").model_stats[0]
    client.infer("mnist", [pixels_input(test_digits.images[:5])])
    after = client.get_inference_statistics("mnist").model_stats[0]
    assert after.inference_count == before.inference_count + 5
    assert after.execution_count == before.execution_count + 1
    stats = after.inference_stats
    assert stats.success.count == before.inference_stats.success.count + 1
    assert stats.success.ns > before.inference_stats.success.ns
    assert stats.compute_infer.ns > 0 and stats.queue.count == stats.success.count
    assert after.last_inference > 0


def test_asyncio_client_32_concurrent_requests(oip_server, oip_repository, test_digits):
    images = test_digits.images[:32]
    expected = in_process(oip_repository, "mnist", images)

    async def main():
        client = triton_aio.InferenceServerClient(oip_server.target)
        try:
            calls = [client.infer("mnist", [pixels_input(images[i:i + 1])], request_id=str(i))
                     for i in range(32)]
            return await asyncio.gather(*calls)
        finally:
            await client.close()

    results = asyncio.run(main())
    for i, result in enumerate(results):
        assert result.get_response().id == str(i)
        np.testing.assert_allclose(result.as_numpy("probabilities")[0], expected[i],
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("datatype, scale", [("FP32", 1 / 255), ("FP32", 1.0), ("FP64", 1.0)])
def test_pixels_other_than_uint8_are_refused_with_the_expected_range(oip_server, test_digits,
                                                                     datatype, scale):
    """A torchvision-minded client (floats 0..1) or one sending raw floats gets an error
    naming the contract, never a confident wrong answer."""
    x = (test_digits.images[:4, None] * scale).astype(np.float32 if datatype == "FP32"
                                                      else np.float64)
    tensor = triton.InferInput("pixels", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    client = triton.InferenceServerClient(oip_server.target)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mnist", [tensor])
    assert "INVALID_ARGUMENT" in str(caught.value) and "UINT8 values 0..255" in str(caught.value)


def test_load_and_unload_model_over_grpc(tmp_path_factory, oip_repository):
    from tests.serving.server_process import ServerProcess
    with ServerProcess(oip_repository, "--model-control", "explicit") as server:
        client = triton.InferenceServerClient(server.target)
        assert not client.is_model_ready("mnist")
        client.load_model("mnist")
        assert client.is_model_ready("mnist")
        client.unload_model("mnist")
        assert not client.is_model_ready("mnist")
        with pytest.raises(InferenceServerException):
            client.load_model("../etc")
