"""The images' requirements: exact pins inside pyproject's ranges, no PyTorch for the servers,
and everything that serving/ imports."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import PurePosixPath

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT
from tests.deploy.files import DOCKERFILES, normalise, parse_dockerfile, read_requirements

SERVING = ROOT / "requirements-serving.txt"
SERVING_GPU = ROOT / "requirements-serving-gpu.txt"
TRAINER = ROOT / "requirements-trainer.txt"
# in pyproject for training (or stub generation) only; a server image must not carry them
TRAINING_ONLY = {"torch", "onnx", "onnxscript", "tqdm", "mlxtend", "grpcio-tools"}
# modules the program hosting the code provides, not a package: Triton's python backend gives
# serving/triton/model.py its utilities
HOST_PROVIDED = {"triton_python_backend_utils"}


def _pyproject() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {normalise(r.name): r for r in map(Requirement, data["project"]["dependencies"])}


@pytest.mark.parametrize("path", [SERVING, SERVING_GPU, TRAINER], ids=lambda p: p.name)
def test_pins_are_unique_and_inside_the_ranges_pyproject_allows(path):
    pins = read_requirements(path)
    names = [p.name for p in pins]
    assert len(names) == len(set(names)), f"{path.name}: a package pinned twice"
    allowed = _pyproject()
    for pin in pins:
        name = "onnxruntime" if pin.name == "onnxruntime-gpu" else pin.name
        assert name in allowed, f"{path.name}: {pin.line} is not a dependency of the project"
        assert allowed[name].specifier.contains(pin.version, prereleases=True), \
            f"{path.name}: {pin.line} is outside pyproject's {allowed[name]}"


def test_server_sets_have_no_training_packages():
    for path in (SERVING, SERVING_GPU):
        assert not {p.name for p in read_requirements(path)} & TRAINING_ONLY, path.name


def test_gpu_set_is_the_cpu_set_with_onnxruntimes_cuda_build():
    cpu = {p.name: p.version for p in read_requirements(SERVING)}
    gpu = {p.name: p.version for p in read_requirements(SERVING_GPU)}
    assert "onnxruntime" not in gpu, "onnxruntime and onnxruntime-gpu overwrite each other"
    assert {**gpu, "onnxruntime": cpu["onnxruntime"]} == {**cpu, "onnxruntime-gpu":
                                                          gpu["onnxruntime-gpu"]}


def test_trainer_set_pins_every_project_dependency():
    # the trainer image installs the project with --no-deps after these, then runs `pip check`
    pinned = {p.name for p in read_requirements(TRAINER)}
    assert set(_pyproject()) <= pinned, set(_pyproject()) - pinned


def _third_party_imports(package) -> set[str]:
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"serving"} - HOST_PROVIDED


def test_serving_set_covers_every_module_serving_imports():
    distributions = importlib.metadata.packages_distributions()
    pinned = {p.name for p in read_requirements(SERVING)}
    for module in sorted(_third_party_imports(ROOT / "serving")):
        providers = {normalise(d) for d in distributions.get(module, [])}
        assert providers & pinned, \
            f"serving imports {module} ({providers or 'not installed'}): not in {SERVING.name}"


@pytest.mark.parametrize("image, path", [("server", SERVING), ("server-gpu", SERVING_GPU),
                                         ("trainer", TRAINER), ("triton", SERVING)])
def test_each_image_installs_its_requirements_file_and_what_it_includes(image, path):
    dockerfile = parse_dockerfile(DOCKERFILES[image])
    installed = {run.args.split(" -r ", 1)[1].split()[0]: stage
                 for stage in dockerfile.stages for run in stage.all("RUN") if " -r " in run.args}
    by_file = {dockerfile.source_of(where, stage): where for where, stage in installed.items()}
    assert path in by_file, f"{image} does not install {path.name}"
    # `-r other.txt` resolves beside the file inside the image: it must be copied there too
    stage = installed[by_file[path]]
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            beside = str(PurePosixPath(by_file[path]).parent / line[3:].strip())
            assert dockerfile.source_of(beside, stage) == ROOT / line[3:].strip(), beside
