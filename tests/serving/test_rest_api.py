"""The Open Inference Protocol's REST form on a real server: tritonclient.http unchanged, raw
HTTP as curl would send it, answers equal to the gRPC project API's for all four tasks, and bad
requests answered with the right status and a JSON error while the server goes on."""

from __future__ import annotations

import io
import json
import ssl
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.http as triton_http
from PIL import Image
from tritonclient.utils import InferenceServerException

from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.client import Client, TLSOptions
from tests.serving.certificates import make_pki
from tests.serving.server_process import ServerProcess, free_port
from tests.serving.synthetic import publish_classifier, publish_tagger
from tests.serving.synthetic_seq2seq import publish_captioner, publish_translator

TEXTS = ["lo veo", "el perro come la manzana roja"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("rest") / "repo"
    publish_classifier(repo, "digits")
    publish_tagger(repo, "tags", thresholds=[0.3, 0.5, 0.7, 0.5])
    publish_translator(repo)
    publish_captioner(repo)
    with ServerProcess(repo, "--max-message-bytes", str(4 * 1024 * 1024)) as server:
        yield server


@pytest.fixture(scope="module")
def http(server):
    client = triton_http.InferenceServerClient(server.http_url.removeprefix("http://"))
    yield client
    client.close()


def digits(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def request(server, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict | list]:
    req = urllib.request.Request(server.http_url + path, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_metadata_config_and_index(server, http):
    assert http.is_server_live() and http.is_server_ready()
    for name in ("digits", "tags", "toy-translate", "toy-caption"):
        assert http.is_model_ready(name) and http.is_model_ready(name, "1")
    assert not http.is_model_ready("no-such-model")
    meta = http.get_model_metadata("digits")
    assert meta["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": [-1, 1, 28, 28]}]
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    translate = http.get_model_metadata("toy-translate")
    assert translate["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert {"attention", "target_pieces", "source_pieces"} <= {
        o["name"] for o in translate["outputs"]}
    config = http.get_model_config("digits")
    assert config["input"][0]["data_type"] == "TYPE_UINT8" and config["input"][0]["dims"] == [
        1, 28, 28]
    assert "0..255" in config["parameters"]["input_range"]["string_value"]
    server_meta = http.get_server_metadata()
    assert server_meta["name"] == "smallserve" and "binary_tensor_data" in \
        server_meta["extensions"]
    index = http.get_model_repository_index()
    assert {"name": "digits", "version": "1", "state": "READY"} in index


@pytest.mark.parametrize("binary", [True, False])
def test_classify_and_tag_equal_the_grpc_api(server, http, binary):
    x = digits(3)
    with Client(server.target) as client:
        classified = client.classify("digits", pixels=x)["results"]
        tagged = client.tag("tags", pixels=x)["results"]
    for model, expected in (("digits", classified), ("tags", tagged)):
        pixels = triton_http.InferInput("pixels", list(x.shape), "UINT8")
        pixels.set_data_from_numpy(x, binary_data=binary)
        result = http.infer(model, [pixels], outputs=[
            triton_http.InferRequestedOutput("probabilities", binary_data=binary)])
        probs = result.as_numpy("probabilities")
        np.testing.assert_allclose(probs, [r["probabilities"] for r in expected], atol=1e-6)
    np.testing.assert_allclose(probs.sum(1) > 0, True)


def test_translation_bytes_in_attention_out(server, http):
    texts = np.array([t.encode() for t in TEXTS], dtype=object)
    tensor = triton_http.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(texts)
    result = http.infer("toy-translate", [tensor], parameters={"beam_size": 2})
    with Client(server.target) as client:
        expected = client.translate("toy-translate", TEXTS, beam_size=2)["translations"]
    attention = result.as_numpy("attention")
    target_lengths = result.as_numpy("target_lengths")
    source_lengths = result.as_numpy("source_lengths")
    for i, want in enumerate(expected):
        t, s = int(target_lengths[i]), int(source_lengths[i])
        assert result.as_numpy("translation")[i].decode() == want["text"]
        assert [p.decode() for p in result.as_numpy("target_pieces")[i, :t]] == \
            want["target_pieces"]
        assert [p.decode() for p in result.as_numpy("source_pieces")[i, :s]] == \
            want["source_pieces"]
        rows = attention[i, :t, :s]
        np.testing.assert_allclose(rows.sum(1), 1, atol=1e-5)
        np.testing.assert_allclose(rows, np.reshape(want["attention"], (t, s)), atol=1e-6)
        assert not attention[i, :t, s:].any()  # padding gets no weight


def test_caption_from_encoded_images(server, http):
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    encoded = np.array([png(im) for im in images], dtype=object)
    tensor = triton_http.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(encoded)
    result = http.infer("toy-caption", [tensor])
    with Client(server.target) as client:
        expected = client.caption("toy-caption", images=list(encoded))["captions"]
    lengths = result.as_numpy("caption_lengths")
    for i, want in enumerate(expected):
        t = int(lengths[i])
        assert result.as_numpy("caption")[i].decode() == want["text"]
        assert [w.decode() for w in result.as_numpy("tokens")[i, :t]] == want["tokens"]
        np.testing.assert_allclose(result.as_numpy("attention")[i, :t].ravel(),
                                   np.ravel(want["attention"]), atol=1e-6)


def test_json_tensors_as_curl_sends_them(server):
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["lo veo"]}],
            "outputs": [{"name": "translation"}, {"name": "attention"}]}
    status, answer = request(server, "POST", "/v2/models/toy-translate/infer",
                             json.dumps(body).encode())
    assert status == 200, answer
    translation, attention = answer["outputs"]
    assert translation["datatype"] == "BYTES" and isinstance(translation["data"][0], str)
    t, s = attention["shape"][1:]
    rows = np.reshape(attention["data"], attention["shape"])[0]
    np.testing.assert_allclose(rows.sum(1), 1, atol=1e-5)
    status, answer = request(server, "GET", "/v2/models/digits/versions/1/stats")
    assert status == 200 and isinstance(answer["model_stats"][0]["inference_count"], int)


def test_floats_scaled_to_one_are_refused_naming_the_range(http):
    x = digits(2).astype(np.float32) / 255
    pixels = triton_http.InferInput("pixels", list(x.shape), "FP32")
    pixels.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as caught:
        http.infer("digits", [pixels])
    assert caught.value.status() == "400" and "UINT8 values 0..255" in caught.value.message()


GOOD = json.dumps({"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 1, 28, 28],
                               "data": [0] * 784}]}).encode()


@pytest.mark.parametrize("path, body, headers, status, words", [
    ("/v2/models/digits/infer", b"{not json", {}, 400, "not valid JSON"),
    ("/v2/models/digits/infer", b"[1, 2]", {}, 400, "JSON object"),
    ("/v2/models/digits/infer", json.dumps({"inputs": [{"name": "pixels", "datatype": "UINT8",
                                                        "shape": "1x784"}]}).encode(),
     {}, 400, "list of integers"),
    ("/v2/models/digits/infer", json.dumps({"inputs": [{
        "name": "pixels", "datatype": "UINT8", "shape": [1, 1, 28, 28],
        "data": ["a"] * 784}]}).encode(), {}, 400, "integers"),
    ("/v2/models/digits/infer", json.dumps({"inputs": [{
        "name": "pixels", "datatype": "UINT8", "shape": [1, 1, 28, 28],
        "data": [300] * 784}]}).encode(), {}, 400, "does not fit"),
    ("/v2/models/digits/infer", json.dumps({"inputs": [{
        "name": "pixels", "datatype": "UINT8", "shape": [1, 1, 28, 27],
        "data": [0] * 756}]}).encode(), {}, 400, "shape"),
    ("/v2/models/digits/infer", json.dumps({"inputs": [{
        "name": "pixels", "datatype": "UINT8", "shape": [1, 1, 28, 28],
        "data": [0] * 700}]}).encode(), {}, 400, "needs 784 values"),
    ("/v2/models/digits/infer", GOOD, {"Inference-Header-Content-Length": "99999"}, 400,
     "byte count"),
    ("/v2/models/digits/infer", json.dumps({"inputs": [{
        "name": "pixels", "datatype": "UINT8", "shape": [2000, 1, 28, 28],
        "parameters": {"binary_data_size": 0}}]}).encode(), {}, 429, "exceeds"),
    ("/v2/models/no-such-model/infer", GOOD, {}, 404, "no-such-model"),
    ("/v2/models/digits/versions/01/infer", GOOD, {}, 400, "leading zeros"),
    ("/v2/models/digits/versions/7/infer", GOOD, {}, 404, "version 7"),
    ("/v2/models/digits/infer", b"x" * (5 * 1024 * 1024), {}, 413, "Too Large"),
    ("/v2/no/such/path", b"", {}, 404, "Not Found"),
])
def test_bad_requests_get_their_status_and_the_server_goes_on(server, http, path, body,
                                                              headers, status, words):
    got, answer = request(server, "POST", path, body, headers)
    assert got == status and words in answer["error"], answer
    got, answer = request(server, "POST", "/v2/models/digits/infer", GOOD)
    assert got == 200 and answer["outputs"][0]["name"] == "probabilities"


def test_calls_are_counted_in_the_metrics_with_bounded_labels(tmp_path):
    repo = tmp_path / "repo"
    publish_classifier(repo, "digits")
    metrics_port = free_port()
    with ServerProcess(repo, "--metrics-port", str(metrics_port)) as server:
        for path, body in [("/v2/models/digits/infer", GOOD), ("/v2/models/digits/infer", b"{"),
                           ("/v2/models/made-up-name/infer", GOOD), ("/v2/x/y/z", b"")]:
            request(server, "POST", path, body)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            text = response.read().decode()
    infer = 'method="POST /v2/models/{name}/infer"'
    assert f'smallserve_requests_total{{api="http",code="OK",{infer},model="digits"}} 1.0' \
        in text
    assert f'code="INVALID_ARGUMENT",{infer},model="digits"' in text
    assert "made-up-name" not in text and "/v2/x/y/z" not in text  # never a client's label


def test_token_auth_and_open_probes(tmp_path):
    repo = tmp_path / "repo"
    publish_classifier(repo, "digits")
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret\n")
    with ServerProcess(repo, "--auth-token-file", str(tokens)) as server:
        assert request(server, "GET", "/v2/health/ready")[0] == 200
        status, answer = request(server, "POST", "/v2/models/digits/infer", GOOD)
        assert status == 401 and "bearer token" in answer["error"]
        status, _ = request(server, "POST", "/v2/models/digits/infer", GOOD,
                            {"Authorization": "Bearer wrong"})
        assert status == 401
        status, answer = request(server, "POST", "/v2/models/digits/infer", GOOD,
                                 {"Authorization": "Bearer s3cret"})
        assert status == 200 and answer["model_name"] == "digits"


def test_http_port_zero_turns_rest_off(tmp_path):
    repo = tmp_path / "repo"
    publish_classifier(repo, "digits")
    with ServerProcess(repo, "--http-port", "0") as server:
        assert "REST" not in server.log
        with Client(server.target) as client:
            assert client.classify("digits", pixels=digits(1))["results"]


def test_model_control_with_tritonclient_http(tmp_path):
    repo = tmp_path / "repo"
    publish_classifier(repo, "digits")
    publish_classifier(repo, "other")
    with ServerProcess(repo, "--model-control", "explicit", "--load-model", "digits") as server:
        client = triton_http.InferenceServerClient(server.http_url.removeprefix("http://"))
        try:
            assert client.is_model_ready("digits") and not client.is_model_ready("other")
            client.load_model("other")
            assert client.is_model_ready("other")
            client.unload_model("digits")
            assert not client.is_model_ready("digits")
            with pytest.raises(InferenceServerException) as caught:
                client.load_model("no-such-model")
            assert caught.value.status() == "404"
        finally:
            client.close()
        with Client(server.target) as grpc_client:  # the project API's view agrees
            assert [m["name"] for m in grpc_client.list_models()] == ["other"]
        with grpc.insecure_channel(server.target) as channel:  # and its own model control
            stub = pb_grpc.ModelServiceStub(channel)
            assert stub.LoadModel(pb.LoadModelRequest(name="digits"), timeout=30).version == 1
            stub.UnloadModel(pb.UnloadModelRequest(name="other"), timeout=30)
            listed = stub.ListModels(pb.ListModelsRequest(), timeout=30).models
            assert [m.name for m in listed] == ["digits"]


def test_model_control_is_refused_while_the_repository_is_polled(server):
    status, answer = request(server, "POST", "/v2/repository/models/digits/unload", b"")
    assert status == 400 and "--model-control explicit" in answer["error"]
    assert request(server, "GET", "/v2/models/digits/ready")[0] == 200


def test_rest_over_mutual_tls(tmp_path):
    repo = tmp_path / "repo"
    publish_classifier(repo, "digits")
    pki = make_pki(tmp_path / "pki")
    tls = TLSOptions.from_files(pki.ca, pki.client_cert, pki.client_key)
    with ServerProcess(repo, "--tls-cert", str(pki.server_cert), "--tls-key",
                       str(pki.server_key), "--tls-client-ca", str(pki.ca),
                       credentials=tls.credentials()) as server:
        url = f"https://127.0.0.1:{server.http_port}/v2/models/digits/infer"
        trusted = ssl.create_default_context(cafile=str(pki.ca))
        trusted.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        req = urllib.request.Request(url, data=GOOD, method="POST")
        with urllib.request.urlopen(req, context=trusted, timeout=30) as response:
            assert json.loads(response.read())["model_name"] == "digits"
        no_client_cert = ssl.create_default_context(cafile=str(pki.ca))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(urllib.request.Request(url, data=GOOD, method="POST"),
                                   context=no_client_cert, timeout=30).read()
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP, TLS port
            urllib.request.urlopen(url.replace("https", "http"), timeout=30)
