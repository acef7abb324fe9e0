"""Writing the Triton form of a model repository (see serving.triton for the layout).

Each model's newest version that loads is exported, under its own version number. A version is
copied verbatim and then loaded from the copy by the same code the server loads it with
(verified against its sha256s, graphs checked, warmed up), so what Triton is given is known to
load. Each model folder is written as a hidden folder inside the output and renamed into place;
a model whose export fails leaves the one exported before it as it was.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from serving.repository import Manifest, model_names, verify_version, version_numbers
from serving.repository.layout import LABELS_FILE, TRITON_CONFIG_FILE
from serving.repository.triton_config import render_triton_config
from serving.runners import load_runner
from serving.runtime.providers import CPU
from serving.runtime.session import SessionConfig
from serving.triton.backend import VERSION_FOLDER
from serving.triton.config import (
    PYTHON_MODEL_FILE,
    PythonModelOptions,
    dynamic_batching,
    render_python_config,
)

FORMS = ("python", "onnx")
MODEL_TEMPLATE = Path(__file__).with_name("model.py")
# export only needs the runner's specs and a proof that the copy loads: no accelerator
EXPORT_SESSIONS = SessionConfig(providers=[CPU], intra_op_threads=1)


@dataclass(frozen=True)
class Exported:
    name: str
    version: int
    task: str
    form: str


class ExportError(Exception):
    pass


def export_repository(repository: Path, out: Path, form: str = "onnx", *,
                      names: list[str] | None = None,
                      options: PythonModelOptions | None = None) -> tuple[
                          list[Exported], dict[str, str]]:
    """The Triton form of every model (or of `names`) in `out`: what was exported, and why
    each model that was not failed."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    out.mkdir(parents=True, exist_ok=True)
    exported, failures = [], {}
    for name in names or model_names(repository):
        try:
            exported.append(export_model(repository / name, out, form,
                                         options or PythonModelOptions()))
        except ExportError as e:
            failures[name] = str(e)
    return exported, failures


def export_model(model_dir: Path, out: Path, form: str,
                 options: PythonModelOptions) -> Exported:
    """The newest version of one model that loads, in its Triton form, at out/<name>."""
    versions = version_numbers(model_dir)
    if not versions:
        raise ExportError(f"{model_dir} has no published version")
    problems = []
    for version in reversed(versions):
        staging = out / f".{model_dir.name}.{uuid.uuid4().hex}"
        try:
            result = _write_model(model_dir / str(version), staging, form, options)
        except Exception as e:  # a version that does not load: the server skips it too
            shutil.rmtree(staging, ignore_errors=True)
            problems.append(f"version {version}: {e}")
            continue
        target = out / model_dir.name
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return result
    raise ExportError("; ".join(problems))


def _write_model(version_dir: Path, folder: Path, form: str,
                 options: PythonModelOptions) -> Exported:
    manifest = verify_version(version_dir)
    onnx_config = render_triton_config(manifest) if form == "onnx" else None
    if onnx_config is not None:
        # Triton's onnxruntime backend runs the graph itself: the version folder as it is
        copy = folder / str(manifest.version)
        shutil.copytree(version_dir, copy)
        verify_version(copy)
        config = f"{onnx_config}{dynamic_batching(manifest)}\n"
        used = "onnx"
    else:
        copy = folder / str(manifest.version) / VERSION_FOLDER
        shutil.copytree(version_dir, copy)
        shutil.copyfile(MODEL_TEMPLATE, copy.parent / PYTHON_MODEL_FILE)
        runner = load_runner(copy, EXPORT_SESSIONS)
        config = render_python_config(runner, options)
        used = "python"
    (folder / TRITON_CONFIG_FILE).write_text(config, encoding="utf-8")
    _write_labels(manifest, folder)
    return Exported(manifest.name, manifest.version, manifest.task, used)


def _write_labels(manifest: Manifest, folder: Path) -> None:
    # Triton reads label_filename from the model folder (the classification extension)
    if manifest.labels:
        (folder / LABELS_FILE).write_text("\n".join(manifest.labels) + "\n", encoding="utf-8")
