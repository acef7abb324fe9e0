"""The loaded models: newest version of each eagerly, others on request, reloaded while running.

Readers take a reference to a Runner and keep it for the whole request. The registry never
mutates what a reader may hold: each change builds a new immutable ModelVersions and swaps it
into a new dict, so a swap to a new version never disturbs a call in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from serving.errors import InvalidInput, ModelNotFound
from serving.repository import model_names, version_numbers
from serving.repository.layout import is_valid_model_name
from serving.runners import Runner, load_runner
from serving.runtime.session import SessionConfig

log = logging.getLogger(__name__)

Loader = Callable[[Path, SessionConfig], Runner]


@dataclass(frozen=True)
class ModelVersions:
    latest: int
    runners: dict[int, Runner] = field(default_factory=dict)
    pinned: frozenset[int] = frozenset()  # versions asked for by number: kept when superseded

    @property
    def task(self) -> str:
        return self.runners[self.latest].manifest.task


class ModelRegistry:
    def __init__(self, repository: Path, config: SessionConfig,
                 loader: Loader = load_runner) -> None:
        self.repository = Path(repository)
        self.config = config
        self._loader = loader
        self._models: dict[str, ModelVersions] = {}
        # versions that failed to load: their folder signature then, and why
        self._failed: dict[tuple[str, int], tuple[tuple[int, ...], str]] = {}
        self._write_lock = threading.Lock()

    # -- reading (request path: no I/O, no locks) --------------------------------------------

    def lookup(self, name: str, version: int = 0) -> Runner | None:
        model = self._models.get(name)
        if model is None:
            return None
        return model.runners.get(version or model.latest)

    def models(self) -> dict[str, ModelVersions]:
        return self._models

    def failures(self) -> dict[tuple[str, int], str]:
        """Why each version that could not be loaded was refused."""
        # list() copies in one step: a loading thread may be adding to the dict meanwhile
        return {key: reason for key, (_, reason) in list(self._failed.items())}

    def runners(self) -> list[Runner]:
        return [r for m in self._models.values() for r in m.runners.values()]

    # -- loading (background thread or executor) ---------------------------------------------

    def get_or_load(self, name: str, version: int = 0) -> Runner:
        """A runner for name/version, loading a version asked for by number if needed."""
        runner = self.lookup(name, version)
        if runner is not None:
            return runner
        # the name becomes a path below: nothing like '../x' or '.staging-...' gets that far
        if not is_valid_model_name(name):
            raise InvalidInput(f"invalid model name {name[:200]!r}: letters, digits, '_', '-' "
                               "and '.', not starting with '.'")
        if name not in model_names(self.repository):
            raise ModelNotFound(f"unknown model {name!r}")
        if version == 0 or name not in self._models:
            raise ModelNotFound(f"model {name!r} has no loadable version")
        if version not in version_numbers(self.repository / name):
            raise ModelNotFound(f"model {name!r} has no version {version}")
        with self._write_lock:
            runner = self.lookup(name, version)
            if runner is None:
                try:
                    runner = self._load(name, version)
                except Exception as e:
                    raise ModelNotFound(f"model {name!r} version {version} cannot be loaded: "
                                        f"{e}") from e
                model = self._models[name]
                self._put(name, ModelVersions(model.latest, {**model.runners, version: runner},
                                              model.pinned | {version}))
        return runner

    def refresh(self) -> None:
        """Load the newest valid version of every model; forget what was deleted from disk."""
        with self._write_lock:
            names = model_names(self.repository)
            for name in names:
                self._refresh_model(name)
            for gone in set(self._models) - set(names):
                log.info("model %s removed from the repository; unloading", gone)
                self._models = {k: v for k, v in self._models.items() if k != gone}
            # a refused version that was deleted is no longer worth reporting
            self._failed = {(n, v): f for (n, v), f in self._failed.items()
                            if n in names and v in version_numbers(self.repository / n)}

    def _refresh_model(self, name: str) -> None:
        on_disk = version_numbers(self.repository / name)
        model = self._models.get(name)
        if model is not None:
            kept = {v: r for v, r in model.runners.items() if v in on_disk}
            for v in set(model.runners) - set(kept):
                log.info("model %s version %d removed from the repository; unloading", name, v)
            if not kept:
                self._models = {k: m for k, m in self._models.items() if k != name}
                model = None
            elif len(kept) != len(model.runners):
                latest = model.latest if model.latest in kept else max(kept)
                model = ModelVersions(latest, kept, model.pinned & set(kept))
                self._put(name, model)
        current = model.latest if model else 0
        for v in sorted((v for v in on_disk if v > current), reverse=True):
            signature = _folder_signature(self.repository / name / str(v))
            if self._failed.get((name, v), ((), ""))[0] == signature:
                continue
            try:
                runner = self._load(name, v)
            except Exception as e:  # a bad version must not take the server down
                self._failed[(name, v)] = (signature, str(e))
                log.error("model %s version %d not loaded: %s", name, v, e)
                continue
            self._failed.pop((name, v), None)
            runners = {k: r for k, r in (model.runners if model else {}).items()
                       if k in (model.pinned if model else ())}
            self._put(name, ModelVersions(v, {**runners, v: runner},
                                          model.pinned if model else frozenset()))
            if model:
                log.info("model %s now serves version %d (was %d)", name, v, model.latest)
            break

    def _put(self, name: str, model: ModelVersions) -> None:
        self._models = {**self._models, name: model}

    def _load(self, name: str, version: int) -> Runner:
        start = time.perf_counter()
        runner = self._loader(self.repository / name / str(version), self.config)
        log.info("loaded model %s version %d (task %s, providers %s) in %.2fs", name, version,
                 runner.manifest.task, ",".join(runner.providers), time.perf_counter() - start)
        return runner


def _folder_signature(folder: Path) -> tuple[int, ...]:
    """Changes when any file in the folder changes, so a repaired version is retried."""
    try:
        stats = [p.stat() for p in sorted(folder.rglob("*")) if p.is_file()]
    except FileNotFoundError:
        return ()
    return tuple(x for s in stats for x in (s.st_mtime_ns, s.st_size))
