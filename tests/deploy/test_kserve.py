"""deploy/kserve/inferenceservice.yaml: a custom predictor that runs the server image as written."""

from __future__ import annotations

import pytest

from serving.config import parse_config
from tests.deploy.files import (
    DOCKERFILES,
    KSERVE_FILE,
    KSERVE_TRITON_FILE,
    load_compose,
    load_yaml,
    parse_dockerfile,
)


@pytest.fixture(scope="module")
def predictor():
    manifest = load_yaml(KSERVE_FILE)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    return manifest["spec"]["predictor"]


def test_one_container_of_the_server_image(predictor):
    container, = predictor["containers"]
    assert container["name"] == "kserve-container"
    repository, tag = container["image"].rsplit("/", 1)[-1].split(":")
    compose_image = load_compose()["services"]["server"]["image"]
    assert f"{repository}:{tag}" == compose_image


def test_args_are_server_flags_and_match_the_port_and_volume(predictor, monkeypatch):
    container, = predictor["containers"]
    for env in container["env"]:
        monkeypatch.setenv(env["name"], env["value"])
    # the image's ENTRYPOINT is `python -m serving`: the args must parse as its flags
    config = parse_config(container["args"])
    port, = container["ports"]
    # KServe/Knative route HTTP/2 cleartext (gRPC) only to a port named h2c
    assert port["name"] == "h2c" and port["containerPort"] == config.port
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert str(config.repository) in mounts and mounts[str(config.repository)]["readOnly"]
    volumes = {v["name"] for v in predictor["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} <= volumes
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == config.port, f"{probe} is not grpc.health.v1"


def test_runs_as_the_image_user(predictor):
    container, = predictor["containers"]
    uid, gid = parse_dockerfile(DOCKERFILES["server"]).final.last("USER").args.split(":")
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))


@pytest.fixture(scope="module")
def triton_model():
    manifest = load_yaml(KSERVE_TRITON_FILE)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    return manifest["spec"]["predictor"]


def test_triton_runtime_on_the_triton_image(triton_model):
    model = triton_model["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    assert model["runtime"] == "kserve-tritonserver"
    assert model["storageUri"].startswith("pvc://")
    repository, tag = model["image"].rsplit("/", 1)[-1].split(":")
    assert f"{repository}:{tag}" == load_compose()["services"]["triton"]["image"]
    # the runtime's `tritonserver ...` arguments need an entrypoint that runs them as given
    entry = parse_dockerfile(DOCKERFILES["triton"]).final.last("ENTRYPOINT").exec_form()
    assert entry == ["/opt/nvidia/nvidia_entrypoint.sh"]


def test_triton_gets_shared_memory_and_runs_as_the_image_user(triton_model):
    model = triton_model["model"]
    mounts = {m["mountPath"]: m["name"] for m in model["volumeMounts"]}
    volumes = {v["name"]: v for v in triton_model["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    uid, gid = parse_dockerfile(DOCKERFILES["triton"]).final.last("USER").args.split(":")
    context = model["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))
