"""One small interface for every model family (load, warm up, run), as MLServer does it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from serving import metrics
from serving.batching import BatchStrategy, TensorBatching
from serving.errors import InvalidInput
from serving.repository import Manifest, TensorSpec
from serving.repository.graph_io import MODEL
from serving.runtime.session import SessionConfig, create_session

if TYPE_CHECKING:
    from serving.decoding.scheduler import StepStrategy

Tensors = dict[str, np.ndarray]
Parameters = dict[str, Any]


class Runner:
    """A loaded model version: its manifest and one onnxruntime session per graph.

    Every front end reaches every task through the same three steps, so none needs to know
    which task it serves:
    - check(inputs, parameters): one call's named tensors and request parameters, checked and
      turned into the payload its batch strategy takes (per call, before it is queued, so a
      bad call fails alone);
    - batch_strategy(): how payloads of concurrent calls are merged into one run;
    - outputs(result, names): one call's result as named output tensors.
    """

    task: ClassVar[str] = ""
    # onnxruntime thread spinning unless the server's flag says otherwise. Off for graphs of a
    # few large operators run once per call: the busy-waiting between calls only takes CPU
    # from the gRPC threads (measured on two cores, 32 concurrent classify calls: 2.1 vs 1.2
    # ms of CPU per call, same p50).
    spinning: ClassVar[bool] = False
    # onnxruntime threads per operator of each graph (by role) unless the server's flag says
    # otherwise; a role not named: one per core of the process's share (SessionConfig.core_share)
    threads: ClassVar[dict[str, int]] = {}

    def __init__(self, manifest: Manifest, version_dir: Path, config: SessionConfig) -> None:
        self.manifest = manifest
        self.version_dir = version_dir
        requested = (config.model_providers or {}).get(manifest.name) \
            or manifest.serving.get("providers") or config.providers
        self.sessions: dict[str, Any] = {}
        self.providers: list[str] = []
        if config.allow_spinning is None:
            config = replace(config, allow_spinning=self.spinning)
        for role, filename in manifest.graphs.items():
            threads = config.intra_op_threads or self.threads.get(role) or config.core_share
            session, active = create_session(version_dir / filename, requested,
                                             replace(config, intra_op_threads=threads))
            self.sessions[role] = session
            self.providers = active
        self.stats = RunnerStats(manifest.name)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    def warmup(self) -> None:
        """Run once on dummy input so the first real request does not pay for lazy init."""

    @property
    def input_specs(self) -> list[TensorSpec]:
        """The tensors a call sends (what the Open Inference Protocol's metadata declares)."""
        return self.manifest.inputs

    @property
    def output_specs(self) -> list[TensorSpec]:
        """The tensors a call may ask for."""
        return self.manifest.outputs

    # read on every call and fixed for a loaded version: worked out once
    @cached_property
    def input_spec_map(self) -> dict[str, TensorSpec]:
        """input_specs by name."""
        return {t.name: t for t in self.input_specs}

    @cached_property
    def output_names(self) -> list[str]:
        """The names of output_specs, in order."""
        return [t.name for t in self.output_specs]

    @cached_property
    def graph_output_names(self) -> list[str]:
        return [o.name for o in self.manifest.outputs]

    def checks_inline(self, inputs: Tensors) -> bool:
        """Whether check() is cheap enough for the event loop (decoding images or tokenising
        long texts is not)."""
        return True

    def check(self, inputs: Tensors, parameters: Parameters) -> Any:
        """One call's inputs and parameters as its checked batch payload (InvalidInput when
        they are not acceptable)."""
        raise NotImplementedError

    def batch_strategy(self) -> BatchStrategy:
        """How concurrent calls to this model merge into one run."""
        return TensorBatching(self.run_graph, (self.name, self.version))

    def step_strategy(self) -> StepStrategy | None:
        """For sequence models: how calls are decoded step by step together (iteration-level
        batching); None for models that run once per call."""
        return None

    def outputs(self, result: Any, names: list[str]) -> Tensors:
        """One call's result (what the strategy's run gave it) as the named output tensors."""
        return {name: result[name] for name in names}

    def run_graph(self, feeds: Tensors, outputs: list[str] | None = None) -> Tensors:
        """Graph tensors in, graph tensors out, for single-graph models."""
        session = self.sessions.get(MODEL)
        if session is None:
            raise InvalidInput(f"model {self.name} is not a single-graph model")
        names = outputs or self.graph_output_names
        results = session.run(names, feeds)
        return dict(zip(names, results, strict=True))


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


class RunnerStats:
    """Counters since start, as Triton's statistics extension reports them."""

    def __init__(self, model: str = "") -> None:
        self.model = model
        self._lock = threading.Lock()
        self.success = Duration()
        self.failure = Duration()
        self.queue = Duration()
        self.compute = Duration()
        self.inference_count = 0  # batch elements
        self.execution_count = 0  # model runs
        self.last_inference_ms = 0
        # this model's metric children, looked up once rather than on every call
        self._queue_seconds = metrics.QUEUE_SECONDS.labels(model)
        self._compute_seconds = metrics.COMPUTE_SECONDS.labels(model)
        self._inferences = metrics.INFERENCES.labels(model)
        self._batch_size = metrics.BATCH_SIZE.labels(model)

    def record_request(self, rows: int, total_ns: int, queue_ns: int, compute_ns: int) -> None:
        """One call answered: its rows, time from arrival, time queued, time of its run."""
        with self._lock:
            self.success.add(total_ns)
            self.queue.add(queue_ns)
            self.compute.add(compute_ns)
            self.inference_count += rows
            self.last_inference_ms = int(time.time() * 1000)
        self._queue_seconds.observe(queue_ns / 1e9)
        self._compute_seconds.observe(compute_ns / 1e9)
        self._inferences.inc(rows)

    def record_execution(self, rows: int) -> None:
        """One model run, which may have answered several batched calls."""
        with self._lock:
            self.execution_count += 1
        self._batch_size.observe(rows)

    def record_failure(self, total_ns: int) -> None:
        with self._lock:
            self.failure.add(total_ns)

    def snapshot(self) -> RunnerStats:
        with self._lock:
            copy = RunnerStats.__new__(RunnerStats)  # counters only: no lock, no metrics
            copy.__dict__.update({k: (Duration(v.count, v.ns) if isinstance(v, Duration) else v)
                                  for k, v in self.__dict__.items() if k != "_lock"})
            return copy
