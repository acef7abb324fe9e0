"""The kserve SDK's REST client, unchanged, against a real server's REST port: all four tasks,
answers equal to tritonclient.http's (which tests/serving/test_rest_api.py checks against the
gRPC API).

kserve registers its own `inference.*` protobuf symbols, which protobuf allows once per process,
so tests/serving/test_standard_clients.py runs this folder in a process of its own.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import tritonclient.http as triton_http
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from PIL import Image

from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import publish_classifier, publish_tagger
from tests.serving.synthetic_seq2seq import publish_captioner, publish_translator


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("kserve") / "repo"
    publish_classifier(repo, "digits")
    publish_tagger(repo, "tags", thresholds=[0.3, 0.5, 0.7, 0.5])
    publish_translator(repo)
    publish_captioner(repo)
    with ServerProcess(repo) as server:
        yield server


def kserve_call(coroutine_of):
    async def main():
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        try:
            return await coroutine_of(client)
        finally:
            await client.close()
    return asyncio.run(main())


def triton_infer(server, model: str, name: str, datatype: str, data: np.ndarray,
                 parameters: dict | None = None) -> triton_http.InferResult:
    client = triton_http.InferenceServerClient(server.http_url.removeprefix("http://"))
    tensor = triton_http.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    try:
        return client.infer(model, [tensor], parameters=parameters)
    finally:
        client.close()


def test_probes(server):
    async def probes(client):
        return (await client.is_server_live(server.http_url),
                await client.is_server_ready(server.http_url),
                await client.is_model_ready(server.http_url, "toy-translate"),
                await client.is_model_ready(server.http_url, "no-such-model"))
    assert kserve_call(probes) == (True, True, True, False)


@pytest.mark.parametrize("model", ["digits", "tags"])
def test_image_models(server, model):
    x = np.random.default_rng(0).integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    pixels = InferInput("pixels", list(x.shape), "UINT8")
    pixels.set_data_from_numpy(x)
    response = kserve_call(lambda c: c.infer(server.http_url, InferRequest(
        model_name=model, infer_inputs=[pixels]), model_name=model))
    probs = next(o for o in response.outputs if o.name == "probabilities").as_numpy()
    expected = triton_infer(server, model, "pixels", "UINT8", x).as_numpy("probabilities")
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_translator_bytes_in_attention_out(server):
    texts = np.array([b"lo veo", b"la casa blanca"], dtype=object)
    text = InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(texts)
    response = kserve_call(lambda c: c.infer(server.http_url, InferRequest(
        model_name="toy-translate", infer_inputs=[text], parameters={"beam_size": 2}),
        model_name="toy-translate"))
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    expected = triton_infer(server, "toy-translate", "text", "BYTES", texts, {"beam_size": 2})
    # kserve reads JSON BYTES back as str
    assert list(outputs["translation"]) == [t.decode() for t in expected.as_numpy("translation")]
    np.testing.assert_allclose(outputs["attention"], expected.as_numpy("attention"), atol=1e-6)
    for i, (t, s) in enumerate(zip(outputs["target_lengths"], outputs["source_lengths"],
                                   strict=True)):
        np.testing.assert_allclose(outputs["attention"][i, :t, :s].sum(1), 1, atol=1e-5)


def test_captioner(server):
    image = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format="PNG")
    images = np.array([encoded.getvalue()], dtype=object)
    tensor = InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(images)
    response = kserve_call(lambda c: c.infer(server.http_url, InferRequest(
        model_name="toy-caption", infer_inputs=[tensor]), model_name="toy-caption"))
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    expected = triton_infer(server, "toy-caption", "image", "BYTES", images)
    assert list(outputs["caption"]) == [t.decode() for t in expected.as_numpy("caption")]
    np.testing.assert_allclose(outputs["attention"], expected.as_numpy("attention"), atol=1e-6)
