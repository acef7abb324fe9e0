"""The commands the images and docker-compose.yml run, run here as written (no Docker engine):
the trainer's job publishes the default models, the server started the image's way serves them,
and the healthcheck command tells SERVING from everything else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from serving.client import TLSOptions
from serving.config import build_parser, parse_config
from tests.conftest import ROOT
from tests.deploy.files import (
    DOCKERFILES,
    KSERVE_FILE,
    load_compose,
    load_yaml,
    parse_dockerfile,
)
from tests.serving.certificates import make_pki
from tests.serving.server_process import ServerProcess, free_port
from tests.serving.synthetic import publish_classifier

SERVER_IMAGES = {"server": "server", "server-gpu": "server-gpu", "server-replica": "server"}
# small enough for a test, large enough to run every step of a real training run
TINY_TRAINING = "--epochs 1 --limit-train 500 --quiet"


def _image_env(image: str) -> dict[str, str]:
    """The image's ENV, less PATH (the venv it names exists only inside the image)."""
    env = parse_dockerfile(DOCKERFILES[image]).final.env()
    env.pop("PATH")
    return env


def _local(command: list[str], image: str) -> list[str]:
    """An image's command with this interpreter and the repository files it was copied from."""
    dockerfile = parse_dockerfile(DOCKERFILES[image])
    out = []
    for word in command:
        source = dockerfile.source_of(word) if word.startswith("/") else None
        out.append(sys.executable if word == "python" else str(source) if source else word)
    return out


def _run(command, env=None, **kwargs):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, **kwargs)


def _server_options() -> set[str]:
    return {f"SMALLSERVE_{a.dest.upper()}" for a in build_parser()._actions if a.option_strings
            and a.dest != "help"}


def test_every_smallserve_variable_set_for_deployment_is_a_server_option():
    options = _server_options()
    used = {}
    for image in ("server", "server-gpu"):
        used |= {k: f"{image} image" for k in _image_env(image) if k.startswith("SMALLSERVE_")}
    for name, service in load_compose()["services"].items():
        used |= {k: name for k in service.get("environment", {}) if k.startswith("SMALLSERVE_")}
    for container in load_yaml(KSERVE_FILE)["spec"]["predictor"]["containers"]:
        used |= {e["name"]: "kserve" for e in container["env"]}
    unknown = {k: where for k, where in used.items() if k not in options}
    assert not unknown, f"not read by the server (typo?): {unknown}"


@pytest.mark.parametrize("service", sorted(SERVER_IMAGES))
def test_image_and_compose_settings_parse_as_server_configuration(service, monkeypatch):
    image = SERVER_IMAGES[service]
    env = {**_image_env(image), **load_compose()["services"][service]["environment"]}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    config = parse_config([])  # the images' entrypoint passes no flags: all of it is env
    assert (str(config.repository), config.host, config.port) == ("/models", "0.0.0.0", 8001)
    expected = ["CUDAExecutionProvider", "CPUExecutionProvider"] if image == "server-gpu" \
        else ["CPUExecutionProvider"]
    assert config.session.providers == expected


@pytest.mark.parametrize("image", ["server", "server-gpu"])
def test_server_entrypoint_runs(image):
    entry = parse_dockerfile(DOCKERFILES[image]).final.last("ENTRYPOINT").exec_form()
    result = _run([*_local(entry, image), "--help"], _image_env(image))
    assert result.returncode == 0, result.stderr
    assert "--repository" in result.stdout


def test_trainer_entrypoint_and_default_command_run():
    final = parse_dockerfile(DOCKERFILES["trainer"]).final
    entry = _local(final.last("ENTRYPOINT").exec_form(), "trainer")
    result = _run([*entry, *final.last("CMD").exec_form()])
    assert result.returncode == 0, result.stderr
    assert "mnist" in result.stdout
    result = _run([*entry, "mnist", "--help"])
    assert result.returncode == 0 and "--repository" in result.stdout, result.stderr


@pytest.fixture(scope="module")
def compose_repository(tmp_path_factory):
    """What the compose trainer service leaves in the volume: its job, run as compose runs it."""
    trainer = load_compose()["services"]["trainer"]
    script = parse_dockerfile(DOCKERFILES["trainer"]).source_of(
        f"/usr/local/bin/{trainer['entrypoint'][0]}")
    repository = tmp_path_factory.mktemp("volume") / "models"
    env = {**trainer["environment"], "REPOSITORY": str(repository), "PYTHON": sys.executable,
           "TRAIN_ARGS": TINY_TRAINING}
    first = _run([str(script)], env)
    assert first.returncode == 0, first.stdout + first.stderr
    again = _run([str(script)], env)
    assert again.returncode == 0, again.stdout + again.stderr
    return repository, trainer["environment"]["MODELS"].split(), again.stdout


def test_trainer_job_publishes_the_default_models_once(compose_repository):
    repository, models, second_run = compose_repository
    for pair in models:
        name = pair.split(":")[1]
        assert (repository / name / "1" / "manifest.json").exists(), name
        # a second `docker compose up` keeps the published models instead of retraining
        assert not (repository / name / "2").exists(), name
        assert f"{name}: already published" in second_run


def test_server_started_the_image_way_serves_the_trained_models(compose_repository,
                                                                 monkeypatch):
    repository, models, _ = compose_repository
    compose = load_compose()["services"]["server"]
    server = ServerProcess(repository)
    env = {**_image_env("server"), **compose["environment"], "SMALLSERVE_REPOSITORY":
           str(repository), "SMALLSERVE_HOST": "127.0.0.1", "SMALLSERVE_PORT": str(server.port),
           # the metrics endpoint (when the server has one) would take a fixed port
           "SMALLSERVE_METRICS_PORT": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    entry = parse_dockerfile(DOCKERFILES["server"]).final.last("ENTRYPOINT").exec_form()
    server.args = _local(entry, "server")
    with server:
        check = _local(compose["healthcheck"]["test"][1:], "server")
        result = _run(check)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SERVING" in result.stdout
        listed = _run([sys.executable, "-m", "serving.client", "--target", server.target,
                       "models"])
        assert listed.returncode == 0, listed.stderr
        for pair in models:
            assert pair.split(":")[1] in listed.stdout
        # SIGTERM, as `docker compose stop` sends it: drain and exit 0
        assert server.stop() == 0, server.log


@pytest.fixture
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def test_healthcheck_fails_unless_serving(health_server):
    servicer, target = health_server
    check = _local(load_compose()["services"]["server"]["healthcheck"]["test"][1:], "server")
    status = health_pb2.HealthCheckResponse
    # NOT_SERVING is what the server answers while it loads its models
    for state, code in ((status.NOT_SERVING, 1), (status.SERVING, 0), (status.UNKNOWN, 1)):
        servicer.set("", state)
        result = _run([*check, "--target", target])
        assert result.returncode == code, (state, result.stdout, result.stderr)
    nobody = _run([*check, "--target", f"127.0.0.1:{free_port()}", "--timeout", "1"])
    assert nobody.returncode == 1


def test_trainer_job_trains_data_parallel_when_asked(tmp_path):
    trainer = load_compose()["services"]["trainer"]
    script = parse_dockerfile(DOCKERFILES["trainer"]).source_of(
        f"/usr/local/bin/{trainer['entrypoint'][0]}")
    env = {**trainer["environment"], "REPOSITORY": str(tmp_path), "PYTHON": sys.executable,
           "TRAIN_ARGS": TINY_TRAINING, "MODELS": "softmax:ddp", "TRAIN_PROCESSES": "2"}
    result = _run([str(script)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "ddp" / "1" / "manifest.json").read_text())
    assert manifest["training"]["distributed"]["world_size"] == 2
    bad = _run([str(script)], {**env, "TRAIN_PROCESSES": "two"})
    assert bad.returncode == 2 and "TRAIN_PROCESSES" in bad.stderr


def test_trainer_job_trains_the_other_tasks_by_kind(tmp_path):
    trainer = load_compose()["services"]["trainer"]
    script = parse_dockerfile(DOCKERFILES["trainer"]).source_of(
        f"/usr/local/bin/{trainer['entrypoint'][0]}")
    # DATA_DIR is an MNIST folder: a translator must not be handed it (this one does not exist)
    env = {**trainer["environment"], "REPOSITORY": str(tmp_path), "PYTHON": sys.executable,
           "MODELS": "translate:translator", "DATA_DIR": str(tmp_path / "no-such-mnist"),
           "TRAIN_ARGS": "--epochs 1 --quiet --toy-sizes 300,40,40 --parity-sentences 10"}
    result = _run([str(script)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "translator" / "1" / "manifest.json").read_text())["task"] \
        == "translate"
    # an unknown kind stops the job before anything trains
    bad = _run([str(script)], {**env, "MODELS": "mlp:fine bogus:other"})
    assert bad.returncode == 2 and "unknown kind 'bogus'" in bad.stderr
    assert not (tmp_path / "fine").exists()


@pytest.mark.parametrize("mutual", [False, True])
def test_healthcheck_speaks_the_servers_tls(tmp_path, mutual):
    """With TLS on (and client certificates demanded), the image's healthcheck still tells
    SERVING, given the CA (and a client certificate) in its environment."""
    pki = make_pki(tmp_path / "pki")
    publish_classifier(tmp_path / "repo", "m")
    server_env = {"SMALLSERVE_TLS_CERT": str(pki.server_cert),
                  "SMALLSERVE_TLS_KEY": str(pki.server_key)}
    if mutual:
        server_env["SMALLSERVE_TLS_CLIENT_CA"] = str(pki.ca)
    probe = TLSOptions.from_files(pki.ca, pki.client_cert, pki.client_key).credentials()
    check = _local(load_compose()["services"]["server"]["healthcheck"]["test"][1:], "server")
    with ServerProcess(tmp_path / "repo", env=server_env, credentials=probe) as server:
        env = {**server_env, "SMALLSERVE_PORT": str(server.port), "HEALTHCHECK_CA": str(pki.ca)}
        if mutual:
            env |= {"HEALTHCHECK_CLIENT_CERT": str(pki.client_cert),
                    "HEALTHCHECK_CLIENT_KEY": str(pki.client_key)}
        ok = _run(check, env)
        assert ok.returncode == 0 and "SERVING" in ok.stdout, ok.stdout + ok.stderr
        # by default the server's own certificate is the trust anchor (gRPC accepts a leaf)
        own = {k: v for k, v in env.items() if k != "HEALTHCHECK_CA"}
        assert _run([*check, "--timeout", "2"], own).returncode == 0
        # a CA that did not sign the server's certificate is refused, and so is plaintext
        wrong = {**env, "HEALTHCHECK_CA": str(pki.stranger_cert)}
        assert _run([*check, "--timeout", "2"], wrong).returncode == 1
        plain = {"SMALLSERVE_PORT": str(server.port), "SMALLSERVE_TLS_CERT": ""}
        assert _run([*check, "--timeout", "2"], plain).returncode == 1
        if mutual:
            anonymous = {k: v for k, v in env.items() if not k.startswith("HEALTHCHECK_CLIENT")}
            assert _run([*check, "--timeout", "2"], anonymous).returncode == 1
