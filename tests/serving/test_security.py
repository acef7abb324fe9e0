"""TLS, mutual TLS and bearer tokens on a real server, with certificates made by the test."""

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.inference import grpc_service_pb2_grpc as oip_grpc
from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.client import AsyncClient, Client, ClientError, TLSOptions, read_token
from serving.config import parse_config
from serving.security import TOKEN_ENV, TokenAuthInterceptor, token_digest
from serving.server import Server
from tests.conftest import ROOT
from tests.serving.certificates import make_pki
from tests.serving.server_process import ServerProcess, free_port
from tests.serving.synthetic import publish_classifier

TOKEN = "tok-" + secrets.token_urlsafe(24)
PIXELS = np.zeros((2, 28, 28), np.uint8)
# every RPC of both APIs and of reflection; health is the one service left open
PROTECTED = [pb.DESCRIPTOR.services_by_name["ModelService"],
             oip.DESCRIPTOR.services_by_name["GRPCInferenceService"],
             reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("secure") / "repo"
    publish_classifier(repo, "m")
    return repo


def client_tls(pki) -> TLSOptions:
    return TLSOptions.from_files(pki.ca, pki.client_cert, pki.client_key)


@pytest.fixture(scope="module")
def mtls_server(pki, repo):
    """Mutual TLS, the token from the environment."""
    metrics_port = free_port()
    with ServerProcess(repo, "--tls-cert", str(pki.server_cert), "--tls-key",
                       str(pki.server_key), "--tls-client-ca", str(pki.ca),
                       "--metrics-port", str(metrics_port), env={TOKEN_ENV: TOKEN},
                       credentials=client_tls(pki).credentials()) as server:
        server.metrics_port = metrics_port
        yield server


def raw_call(channel, method, streaming_in: bool, streaming_out: bool, metadata=()):
    """One call with an empty request, whatever the method's shape; returns the status code."""
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}
    call = kind[(streaming_in, streaming_out)](method)
    request = iter([b""]) if streaming_in else b""
    try:
        result = call(request, timeout=10, metadata=metadata)
        if streaming_out:
            list(result)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def each_method():
    for service in PROTECTED:
        for m in service.methods:
            yield f"/{service.full_name}/{m.name}", m.client_streaming, m.server_streaming


@pytest.mark.parametrize("metadata", [
    (), (("authorization", "Bearer wrong"),), (("authorization", "Bearer "),),
    (("authorization", TOKEN),), (("authorization", f"Basic {TOKEN}"),),
    (("authorization", f"Bearer {TOKEN}x"),), (("authorization", f"Bearer {TOKEN[:-1]}"),),
    (("authorization", f"Bearer {TOKEN}"), ("authorization", "Bearer wrong")),
], ids=["none", "wrong", "empty", "no-scheme", "basic", "longer", "shorter", "twice"])
def test_every_rpc_without_a_valid_token_is_unauthenticated(mtls_server, pki, metadata):
    with grpc.secure_channel(mtls_server.target, client_tls(pki).credentials()) as channel:
        codes = {method: raw_call(channel, method, i, o, metadata)
                 for method, i, o in each_method()}
        codes["/no.Such/Method"] = raw_call(channel, "/no.Such/Method", False, False, metadata)
    assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, codes


def test_the_right_token_passes_every_rpc(mtls_server, pki):
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.secure_channel(mtls_server.target, client_tls(pki).credentials()) as channel:
        codes = {method: raw_call(channel, method, i, o, metadata)
                 for method, i, o in each_method()}
    assert grpc.StatusCode.UNAUTHENTICATED not in codes.values(), codes
    assert codes["/smallserve.v1.ModelService/ListModels"] == grpc.StatusCode.OK


def test_right_token_over_mutual_tls_classifies(mtls_server, pki):
    with Client(mtls_server.target, tls=client_tls(pki), token=TOKEN) as client:
        result = client.classify("m", pixels=PIXELS)
    assert len(result["results"]) == 2

    async def concurrently():
        async with AsyncClient(mtls_server.target, tls=client_tls(pki), token=TOKEN) as client:
            return await asyncio.gather(*(client.classify("m", pixels=PIXELS[:1])
                                          for _ in range(8)))

    assert all(r["version"] == 1 for r in asyncio.run(concurrently()))
    with Client(mtls_server.target, tls=client_tls(pki), token="wrong") as client, \
            pytest.raises(ClientError) as caught:
        client.list_models()
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_health_needs_no_token(mtls_server, pki):
    with grpc.secure_channel(mtls_server.target, client_tls(pki).credentials()) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        first = next(stub.Watch(health_pb2.HealthCheckRequest(), timeout=5))
    assert status == first.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("who", ["plaintext", "no client certificate", "untrusted certificate"])
def test_clients_the_transport_refuses_fail_cleanly(mtls_server, pki, who):
    if who == "plaintext":
        channel = grpc.insecure_channel(mtls_server.target)
    else:
        cert, key = (None, None) if who == "no client certificate" else \
            (pki.stranger_cert, pki.stranger_key)
        channel = grpc.secure_channel(
            mtls_server.target, TLSOptions.from_files(pki.ca, cert, key).credentials())
    with channel, pytest.raises(grpc.RpcError) as caught:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert mtls_server.health() == "SERVING"


def test_secrets_stay_out_of_logs_and_argv(mtls_server):
    assert "TLS mutual, token authentication 1 token(s)" in mtls_server.log
    assert TOKEN not in mtls_server.log
    cmdline = Path(f"/proc/{mtls_server.process.pid}/cmdline").read_bytes()
    assert TOKEN.encode() not in cmdline


def test_cli_over_tls_with_a_token_file(pki, repo, tmp_path):
    """TLS without client certificates; the server and the CLI read the token from files."""
    server_tokens = tmp_path / "tokens"
    server_tokens.write_text(f"# rotated monthly\nold-{TOKEN}\n\n{TOKEN}\n")
    client_token = tmp_path / "token"
    client_token.write_text(TOKEN + "\n")
    creds = TLSOptions.from_files(pki.ca).credentials()
    with ServerProcess(repo, "--tls-cert", str(pki.server_cert), "--tls-key",
                       str(pki.server_key), "--auth-token-file", str(server_tokens),
                       credentials=creds) as server:
        base = [sys.executable, "-m", "serving.client", "--target", f"localhost:{server.port}",
                "--tls-ca", str(pki.ca)]
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}

        def cli(*args):
            return subprocess.run([*base, *args], capture_output=True, text=True, cwd=ROOT,
                                  env=env, timeout=60)

        ok = cli("--token-file", str(client_token), "models")
        refused = cli("models")
        health = cli("health")
        with Client(server.target, tls=TLSOptions.from_files(pki.ca),
                    token=f"old-{TOKEN}") as client:
            assert client.list_models()[0]["name"] == "m"  # every token of the file works
        log = server.log
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)[0]["name"] == "m"
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    assert health.returncode == 0 and json.loads(health.stdout) == {"status": "SERVING"}
    assert "TLS on, token authentication 2 token(s)" in log and TOKEN not in log


# -- configuration, in process -------------------------------------------------------------

def test_tokens_come_from_a_file_or_the_environment_only(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    base = ["--repository", str(tmp_path)]
    assert not parse_config(base).security.auth  # off by default
    tokens = tmp_path / "tokens"
    tokens.write_text("a1\n# comment\nb2\n")
    monkeypatch.setenv(TOKEN_ENV, "c3")
    config = parse_config([*base, "--auth-token-file", str(tokens)])
    assert config.security.token_digests == {token_digest(t) for t in ("a1", "b2", "c3")}
    assert "c3" not in repr(config) and "a1" not in repr(config)
    with pytest.raises(SystemExit):
        parse_config([*base, "--auth-token", "x"])  # no flag takes a secret's value
    (tmp_path / "empty").write_text("# nothing\n")
    for bad in (["--auth-token-file", str(tmp_path / "empty")],
                ["--auth-token-file", str(tmp_path / "missing")],
                ["--tls-cert", str(tokens)], ["--tls-client-ca", str(tokens)]):
        with pytest.raises(SystemExit):
            parse_config([*base, *bad])


def test_client_token_file_beats_the_environment(tmp_path):
    (tmp_path / "t").write_text("\n# c\nfrom-file\n")
    assert read_token(tmp_path / "t", {TOKEN_ENV: "from-env"}) == "from-file"
    assert read_token(None, {TOKEN_ENV: " from-env\n"}) == "from-env"
    assert read_token(None, {}) is None


class _Metadatum:
    def __init__(self, key, value):
        self.key, self.value = key, value


@pytest.mark.parametrize("header, accepted", [
    ("Bearer good", True), ("bearer good", True), ("Bearer  good ", True),
    ("Bearer other", True), ("Bearer goo", False), ("Bearer goodd", False),
    ("good", False), ("Bearer", False), ("", False), (b"Bearer good", False),
])
def test_interceptor_token_check(header, accepted):
    interceptor = TokenAuthInterceptor(frozenset({token_digest("good"), token_digest("other")}))
    assert interceptor.allows([_Metadatum("authorization", header)]) is accepted


# -- names that could be paths ---------------------------------------------------------------

BAD_NAMES = ["../outside", "..", ".", "/", "/etc/passwd", "m/../../outside", "m/1", ".hidden",
             "m\x00", "..\\outside", "%2e%2e%2foutside", "m/", " m", "\u2024\u2024/outside"]


def test_names_that_could_be_paths_never_reach_the_disk(mtls_server, pki, repo):
    """Valid models sit just outside the repository and in a hidden folder inside it; no name
    reaches them: every call gets INVALID_ARGUMENT or NOT_FOUND."""
    publish_classifier(repo.parent, "outside")
    hidden = repo / ".hidden"
    (hidden / "1").mkdir(parents=True, exist_ok=True)
    for f in (repo / "m" / "1").iterdir():
        (hidden / "1" / f.name).write_bytes(f.read_bytes())
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    codes = {}
    with grpc.secure_channel(mtls_server.target, client_tls(pki).credentials()) as channel:
        api, infer = pb_grpc.ModelServiceStub(channel), oip_grpc.GRPCInferenceServiceStub(channel)
        pixels = pb.Tensor(dtype=pb.UINT8, shape=[1, 28, 28], data=bytes(784))
        for name in BAD_NAMES:
            ref = pb.ModelRef(name=name)
            request = oip.ModelInferRequest(model_name=name)
            request.inputs.add(name="pixels", datatype="FP32", shape=[1, 1, 28, 28])
            request.raw_input_contents.append(bytes(4 * 784))
            calls = [
                ("GetModelMetadata", api.GetModelMetadata, pb.GetModelMetadataRequest(model=ref)),
                ("Classify", api.Classify, pb.ClassifyRequest(model=ref, pixels=pixels)),
                ("ModelMetadata", infer.ModelMetadata, oip.ModelMetadataRequest(name=name)),
                ("ModelConfig", infer.ModelConfig, oip.ModelConfigRequest(name=name)),
                ("ModelStatistics", infer.ModelStatistics, oip.ModelStatisticsRequest(name=name)),
                ("ModelInfer", infer.ModelInfer, request)]
            for rpc, method, message in calls:
                try:
                    method(message, timeout=10, metadata=metadata)
                    codes[(rpc, name)] = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    codes[(rpc, name)] = e.code()
            ready = infer.ModelReady(oip.ModelReadyRequest(name=name), timeout=10,
                                     metadata=metadata)
            assert not ready.ready, name
        for version in ["../1", "1/../../outside/1", "-1", "1e3", "\u00b2", " 1"]:
            try:
                infer.ModelMetadata(oip.ModelMetadataRequest(name="m", version=version),
                                    timeout=10, metadata=metadata)
                codes[("version", version)] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                codes[("version", version)] = e.code()
    allowed = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert {k: c for k, c in codes.items() if c not in allowed} == {}
    loads = [line for line in mtls_server.log.splitlines() if "loaded model" in line]
    assert loads and all("loaded model m version 1 " in line for line in loads), loads


UNSAFE_LOADERS = re.compile(r"\bpickle\b|cPickle|\bdill\b|\bjoblib\b|\bshelve\b|\bmarshal\b|"
                            r"torch\.load|allow_pickle|\bnp\.load\(|numpy\.load\(|"
                            r"yaml\.(unsafe_)?load\(|\beval\(|\bexec\(")


def test_the_server_never_unpickles_or_evaluates_anything():
    """Models arrive as ONNX graphs, JSON manifests and SentencePiece files; nothing in
    serving/ may deserialise Python objects or run code found in a file or request."""
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for path in sorted((ROOT / "serving").rglob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if UNSAFE_LOADERS.search(line)]
    assert hits == []


def test_a_file_that_is_not_pem_is_named_at_start(tmp_path, pki):
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    cases = [(pki.server_cert, tmp_path / "junk.pem", "no PEM private key"),
             (tmp_path / "junk.pem", pki.server_key, "no PEM certificate"),
             (pki.server_cert, tmp_path / "missing.key", "cannot read TLS files")]
    for cert, key, message in cases:
        config = parse_config(["--repository", str(tmp_path), "--host", "127.0.0.1",
                               "--port", "0", "--metrics-port", "0", "--tls-cert", str(cert),
                               "--tls-key", str(key)])

        async def start(config=config):
            try:
                await Server(config).start()
            except OSError as e:
                return str(e)
            return None

        assert message in (asyncio.run(start()) or ""), message


def test_calls_refused_before_any_handler_are_counted(mtls_server, pki):
    """Refusals by the token check and by the request parser never reach the code that counts
    answered calls; they have their own counter."""
    classify = "/smallserve.v1.ModelService/Classify"
    token = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.secure_channel(mtls_server.target, client_tls(pki).credentials()) as channel:
        call = channel.unary_unary(classify)
        cases = (((), b"", grpc.StatusCode.UNAUTHENTICATED),
                 (token, b"\xff\xff", grpc.StatusCode.INVALID_ARGUMENT))
        for metadata, request, code in cases:
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=10, metadata=metadata)
            assert caught.value.code() == code
    text = urllib.request.urlopen(f"http://127.0.0.1:{mtls_server.metrics_port}/metrics",
                                  timeout=5).read().decode()
    for code in ("UNAUTHENTICATED", "INVALID_ARGUMENT"):
        line = next(x for x in text.splitlines() if x.startswith(
            f'smallserve_refused_total{{code="{code}",method="{classify}"}}'))
        assert float(line.split()[-1]) >= 1


def test_refused_calls_to_made_up_methods_share_one_metric_label(mtls_server, pki):
    """20,000 calls without a token, each to a path of its own: a label per path grew
    /metrics to 12 MB (and the process by 37 MiB), without limit."""
    refused = 0
    with grpc.secure_channel(mtls_server.target, client_tls(pki).credentials()) as channel:
        for start in range(0, 20_000, 500):
            calls = [channel.unary_unary(f"/x{secrets.token_hex(6)}.Service/M{i}").future(
                b"", timeout=60) for i in range(start, start + 500)]
            for call in calls:
                assert call.code() == grpc.StatusCode.UNAUTHENTICATED
                refused += 1
    text = urllib.request.urlopen(f"http://127.0.0.1:{mtls_server.metrics_port}/metrics",
                                  timeout=5).read().decode()
    assert len(text.encode()) < 64 * 1024
    line = next(x for x in text.splitlines() if x.startswith(
        'smallserve_refused_total{code="UNAUTHENTICATED",method="unknown"}'))
    assert float(line.split()[-1]) >= refused == 20_000
