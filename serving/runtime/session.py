"""onnxruntime sessions: options, provider fallback, and the one place sessions are made."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from serving.runtime.providers import CPU, choose_providers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionConfig:
    providers: list[str] | None = None  # None: choose automatically
    intra_op_threads: int = 0  # 0: the runner decides by the shape of its graphs (Runner.threads)
    inter_op_threads: int = 0
    model_providers: dict[str, list[str]] | None = None  # per-model override by name
    # Whether onnxruntime's pool threads busy-wait for work; None: the runner decides by the
    # shape of its graphs (see Runner.spinning).
    allow_spinning: bool | None = None
    # the cores this process's onnxruntime threads may take where the runner leaves it to
    # onnxruntime (0: all of them; the supervisor gives each worker process its share)
    core_share: int = 0


SessionFactory = Callable[..., Any]


def session_options(config: SessionConfig) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.intra_op_threads
    opts.inter_op_num_threads = config.inter_op_threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if config.allow_spinning is not None:
        spin = "1" if config.allow_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    opts.log_severity_level = 3  # onnxruntime's own warnings drown the operator's log
    return opts


def create_session(
    path: Path,
    requested: list[str] | None,
    config: SessionConfig,
    available: list[str] | None = None,
    factory: SessionFactory = ort.InferenceSession,
) -> tuple[Any, list[str]]:
    """A session on the best providers, falling back to the CPU when an accelerator fails.

    CUDA can be listed by onnxruntime and still fail at session creation (no driver, no
    device, out of memory) or be dropped silently; both cases end on the CPU with a warning.
    """
    if available is None:
        available = ort.get_available_providers()
    providers = choose_providers(available, requested)
    opts = session_options(config)
    try:
        session = factory(str(path), sess_options=opts, providers=providers)
    except Exception as e:
        if providers == [CPU] or CPU not in available:
            raise
        log.warning("could not create %s on %s (%s); falling back to %s",
                    path, providers, e, CPU)
        session = factory(str(path), sess_options=opts, providers=[CPU])
    active = list(session.get_providers())
    missing = [p for p in providers if p not in active]
    if missing:
        log.warning("%s: providers %s failed to initialise; running on %s", path, missing, active)
    return session, active


