"""The loaded models: newest version of each eagerly, others on request, reloaded while running.

Readers take a reference to a Runner and keep it for the whole request. The registry never
mutates what a reader may hold: each change builds a new immutable ModelVersions and swaps it
into a new dict, so a swap to a new version never disturbs a call in flight.

A version is swapped in only once it is loaded and verified (manifest, sha256s, graphs against
the manifest, warm-up). When the served version is superseded, deleted or changed on disk, the
one that replaces it is loaded first and the old one serves until then; when nothing else
loads, a changed version keeps serving what was verified (as Triton keeps a model whose reload
failed), a deleted one is unloaded. A refused version is remembered with its files' identity
(size, mtime, inode) and not read again until they change. Versions asked for by number stay
loaded least-recently-used within max_loaded_versions per model; the latest is never evicted.
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
from serving.repository.safe_files import identity
from serving.runners import Runner, load_runner
from serving.runtime.session import SessionConfig

log = logging.getLogger(__name__)

Loader = Callable[[Path, SessionConfig], Runner]
Key = tuple[str, int]
DEFAULT_MAX_LOADED_VERSIONS = 4
MODEL_CONTROL_MODES = ("poll", "explicit")


@dataclass(frozen=True)
class ModelVersions:
    latest: int
    runners: dict[int, Runner] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.runners[self.latest].manifest.task


@dataclass(frozen=True)
class Refusal:
    identity: tuple[object, ...]  # of the version's files when it was refused
    reason: str


class ModelRegistry:
    def __init__(self, repository: Path, config: SessionConfig, loader: Loader = load_runner,
                 max_loaded_versions: int = DEFAULT_MAX_LOADED_VERSIONS,
                 model_control: str = "poll") -> None:
        """model_control "explicit": refresh() keeps loaded models current but loads no
        other; models come and go through load() and unload()."""
        if model_control not in MODEL_CONTROL_MODES:
            raise ValueError(f"model_control must be one of {MODEL_CONTROL_MODES}")
        self.repository = Path(repository)
        self.config = config
        self.max_loaded_versions = max(1, max_loaded_versions)
        self.model_control = model_control
        self._loader = loader
        self._models: dict[str, ModelVersions] = {}
        self._refused: dict[Key, Refusal] = {}
        self._identities: dict[Key, tuple[object, ...]] = {}  # of each loaded version's files
        self._last_used: dict[Key, int] = {}  # versions asked for by number
        self._scan_lock = threading.Lock()  # one scan (or load/unload of a model) at a time
        self._request_load_lock = threading.Lock()  # one version loaded on request at a time
        self._swap_lock = threading.Lock()  # read-modify-write of _models

    # -- reading (request path: no I/O, no locks) --------------------------------------------

    def lookup(self, name: str, version: int = 0) -> Runner | None:
        model = self._models.get(name)
        if model is None:
            return None
        if version and version != model.latest:
            self._last_used[(name, version)] = time.monotonic_ns()
        return model.runners.get(version or model.latest)

    def models(self) -> dict[str, ModelVersions]:
        return self._models

    def failures(self) -> dict[Key, str]:
        """Why each version that could not be loaded was refused."""
        # list() copies in one step: a loading thread may be adding to the dict meanwhile
        return {key: refusal.reason for key, refusal in list(self._refused.items())}

    def runners(self) -> list[Runner]:
        return [r for m in self._models.values() for r in m.runners.values()]

    # -- loading (background thread or executor) ---------------------------------------------

    def get_or_load(self, name: str, version: int = 0) -> Runner:
        """A runner for name/version, loading a version asked for by number if needed."""
        runner = self.lookup(name, version)
        if runner is not None:
            return runner
        self._check_known(name)
        if name not in self._models:
            if self.model_control == "explicit":
                raise ModelNotFound(f"model {name!r} is not loaded")
            raise ModelNotFound(f"model {name!r} has no loadable version")
        if version == 0:
            raise ModelNotFound(f"model {name!r} has no loadable version")
        if version not in version_numbers(self.repository / name):
            raise ModelNotFound(f"model {name!r} has no version {version}")
        with self._request_load_lock:  # a second call for the same version waits, then finds it
            runner = self.lookup(name, version)
            if runner is not None:
                return runner
            try:
                runner = self._load_unless_refused(name, version)
            except Exception as e:
                raise ModelNotFound(f"model {name!r} version {version} cannot be loaded: "
                                    f"{e}") from e
            with self._swap_lock:
                model = self._models.get(name)
                if model is None:
                    raise ModelNotFound(f"model {name!r} was unloaded")
                self._last_used[(name, version)] = time.monotonic_ns()
                self._put(name, ModelVersions(model.latest, {**model.runners, version: runner}))
        return runner

    def refresh(self) -> None:
        """Serve the newest valid version of every model; forget what was deleted from disk.
        One model's failure never stops the scan of the others."""
        with self._scan_lock:
            names = model_names(self.repository)
            for name in names:
                if self.model_control == "explicit" and name not in self._models:
                    continue
                try:
                    self._refresh_model(name)
                except Exception:
                    log.exception("scanning model %s failed", name)
            with self._swap_lock:
                for gone in set(self._models) - set(names):
                    log.info("model %s removed from the repository; unloading", gone)
                    self._put(gone, None)
            # a refused version that was deleted is no longer worth reporting
            on_disk = {n: set(version_numbers(self.repository / n)) for n in names}
            for name, version in list(self._refused):
                if version not in on_disk.get(name, ()):
                    self._refused.pop((name, version), None)

    def load(self, name: str) -> None:
        """Load (or bring up to date) the newest valid version of a model now; ModelNotFound
        with the reason when none loads. In explicit mode, scans keep it current from then."""
        self._check_known(name)
        with self._scan_lock:
            self._refresh_model(name)
        if name not in self._models:
            reasons = [r for (n, _), r in sorted(self.failures().items(), reverse=True)
                       if n == name]
            raise ModelNotFound(f"model {name!r} has no loadable version"
                                + (f": {reasons[0]}" if reasons else ""))

    def unload(self, name: str) -> None:
        """Stop serving every version of a model; calls in flight finish. In poll mode the
        next scan loads it again."""
        with self._scan_lock, self._swap_lock:
            if name not in self._models:
                self._check_known(name)
                return
            self._put(name, None)
        log.info("model %s unloaded on request", name)

    # -- internals -----------------------------------------------------------------------------

    def _check_known(self, name: str) -> None:
        # the name becomes a path below: nothing like '../x' or '.staging-...' gets that far
        if not is_valid_model_name(name):
            raise InvalidInput(f"invalid model name {name[:200]!r}: letters, digits, '_', '-' "
                               "and '.', not starting with '.'")
        if name not in model_names(self.repository):
            raise ModelNotFound(f"unknown model {name!r}")

    def _refresh_model(self, name: str) -> None:
        """Swap in the newest version that is loaded and unchanged or that loads now; drop
        what left the disk or changed on it. Nothing is removed before its replacement is
        ready."""
        on_disk = version_numbers(self.repository / name)
        model = self._models.get(name)
        loaded = model.runners if model else {}
        now = {v: identity(self._folder(name, v)) for v in loaded if v in on_disk}
        changed = {v for v, files in now.items() if self._identities.get((name, v)) != files}
        # a changed version already refused as it is now was reported then, not every scan
        news = {v for v in changed if self._refused.get((name, v), Refusal((), "")).identity
                != now[v]}
        for v in sorted(news):
            log.warning("model %s version %d changed on disk; verifying it again", name, v)
        target, runner = None, None
        for v in sorted(on_disk, reverse=True):
            if v in loaded and v not in changed:
                target, runner = v, loaded[v]
                break
            try:
                target, runner = v, self._load_unless_refused(name, v)
                break
            except Exception:  # refused and logged; the next older version may serve
                continue
        if runner is None and model is not None and model.latest in on_disk:
            if model.latest in news:
                log.error("model %s: no version loads; version %d keeps serving what was "
                          "verified when it loaded", name, model.latest)
            target, runner = model.latest, model.runners[model.latest]
            changed.discard(model.latest)
        with self._swap_lock:
            current = self._models.get(name)
            if runner is None or target is None:
                if current is not None:
                    log.info("model %s has no loadable version left; unloading", name)
                    self._put(name, None)
                return
            # besides the latest, only versions asked for by number stay (within the bound),
            # unless they left the disk or changed on it
            drop = changed | (set(current.runners) - set(on_disk) if current else set())
            kept = {v: r for v, r in (current.runners if current else {}).items()
                    if v not in drop and v != target and (name, v) in self._last_used}
            self._put(name, ModelVersions(target, {**kept, target: runner}))
        if current is not None and current.latest != target:
            log.info("model %s now serves version %d (was %d)", name, target, current.latest)

    def _load_unless_refused(self, name: str, version: int) -> Runner:
        """Load and verify a version, unless it was refused and none of its files changed
        since: then its reason, without reading (let alone hashing) anything again."""
        key = (name, version)
        files = identity(self._folder(name, version))
        refused = self._refused.get(key)
        if refused is not None and refused.identity == files:
            raise ModelNotFound(refused.reason)
        try:
            runner = self._load(name, version)
        except Exception as e:  # a bad version must not take the server down
            self._refused[key] = Refusal(files, str(e))
            log.error("model %s version %d not loaded: %s", name, version, e)
            raise
        self._refused.pop(key, None)
        self._identities[key] = files
        return runner

    def _put(self, name: str, model: ModelVersions | None) -> None:
        """Swap in a model's new versions (None: unload it), within the loaded-versions bound.
        Callers hold _swap_lock."""
        if model is not None:
            model = self._bounded(name, model)
        before = self._models.get(name)
        self._models = {**{k: m for k, m in self._models.items() if k != name},
                        **({name: model} if model is not None else {})}
        for v in set(before.runners if before else ()) - set(model.runners if model else ()):
            self._identities.pop((name, v), None)
            self._last_used.pop((name, v), None)

    def _bounded(self, name: str, model: ModelVersions) -> ModelVersions:
        """At most max_loaded_versions of one model: the least recently used of those asked
        for by number go first, the latest never."""
        excess = len(model.runners) - self.max_loaded_versions
        if excess <= 0:
            return model
        others = sorted((v for v in model.runners if v != model.latest),
                        key=lambda v: self._last_used.get((name, v), 0))
        evicted = set(others[:excess])
        for v in sorted(evicted):
            log.info("unloading model %s version %d: least recently used beyond "
                     "--max-loaded-versions %d", name, v, self.max_loaded_versions)
        return ModelVersions(model.latest,
                             {v: r for v, r in model.runners.items() if v not in evicted})

    def _folder(self, name: str, version: int) -> Path:
        return self.repository / name / str(version)

    def _load(self, name: str, version: int) -> Runner:
        start = time.perf_counter()
        runner = self._loader(self._folder(name, version), self.config)
        log.info("loaded model %s version %d (task %s, providers %s) in %.2fs", name, version,
                 runner.manifest.task, ",".join(runner.providers), time.perf_counter() - start)
        return runner
