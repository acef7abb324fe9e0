"""One small interface for every model family (load, warm up, run), as MLServer does it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from serving.errors import InvalidInput
from serving.repository import Manifest
from serving.runtime.session import SessionConfig, create_session


class Runner:
    """A loaded model version: its manifest and one onnxruntime session per graph."""

    task: ClassVar[str] = ""

    def __init__(self, manifest: Manifest, version_dir: Path, config: SessionConfig) -> None:
        self.manifest = manifest
        self.version_dir = version_dir
        requested = (config.model_providers or {}).get(manifest.name) \
            or manifest.serving.get("providers") or config.providers
        self.sessions: dict[str, Any] = {}
        self.providers: list[str] = []
        for role, filename in manifest.graphs.items():
            session, active = create_session(version_dir / filename, requested, config)
            self.sessions[role] = session
            self.providers = active
        self.stats = RunnerStats()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    def warmup(self) -> None:
        """Run once on dummy input so the first real request does not pay for lazy init."""

    def infer(self, feeds: dict[str, np.ndarray],
              outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Raw tensors in, raw tensors out, for single-graph models (used by the OIP API)."""
        session = self.sessions.get("model")
        if session is None:
            raise InvalidInput(f"model {self.name} is not a single-graph model")
        names = outputs or [o.name for o in self.manifest.outputs]
        results = session.run(names, feeds)
        return dict(zip(names, results, strict=True))


class RunnerStats:
    """Counters since start, read by metrics and statistics endpoints."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.success = 0
        self.failure = 0
        self.inferences = 0
        self.compute_ns = 0

    def record(self, ok: bool, batch: int = 0, compute_ns: int = 0) -> None:
        with self._lock:
            if ok:
                self.success += 1
                self.inferences += batch
                self.compute_ns += compute_ns
            else:
                self.failure += 1
