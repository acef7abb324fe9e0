"""Per-task runners behind one interface; the server picks one by the manifest's task."""

from __future__ import annotations

from pathlib import Path

from serving.errors import ModelNotFound
from serving.repository import verify_version
from serving.repository.graphs import check_graphs
from serving.runners.base import Runner
from serving.runners.captioner import CaptionerRunner
from serving.runners.classifier import ClassifierRunner
from serving.runners.tagger import TaggerRunner
from serving.runners.translator import TranslatorRunner
from serving.runtime.session import SessionConfig

RUNNERS: dict[str, type[Runner]] = {
    ClassifierRunner.task: ClassifierRunner,
    TaggerRunner.task: TaggerRunner,
    TranslatorRunner.task: TranslatorRunner,
    CaptionerRunner.task: CaptionerRunner,
}


def load_runner(version_dir: Path, config: SessionConfig) -> Runner:
    """Verify a version folder (manifest, files inside it with their sha256s), load it with
    the runner of its task, and check its graphs against the manifest before it can serve."""
    manifest = verify_version(version_dir)
    runner_class = RUNNERS.get(manifest.task)
    if runner_class is None:
        raise ModelNotFound(f"this server has no runner for task {manifest.task!r}")
    runner = runner_class(manifest, version_dir, config)
    check_graphs(manifest, version_dir, runner.sessions)
    runner.warmup()
    return runner


__all__ = ["RUNNERS", "CaptionerRunner", "ClassifierRunner", "Runner", "TaggerRunner",
           "TranslatorRunner", "load_runner"]
