"""Prometheus metrics, served in the text format on their own HTTP port (/metrics).

The metrics updated on every call are this module's own lean counters and histograms, read by
one collector at scrape time: prometheus_client's own take a lock and walk every bucket in
Python per observation, about 3 us each, and a call updated six of them (measured as a tenth of
the server's own per-call work on a small classifier). The exposition is the same: the names,
labels, `_total`, `_bucket{le=...}`, `_sum` and `_count` samples prometheus_client writes.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry()
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2,
                   5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _CounterChild:
    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        with self._lock:  # a worker thread may count too (cheap: never contended for long)
            self.value += amount


class _HistogramChild:
    __slots__ = ("_bounds", "_lock", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        i = bisect_left(self._bounds, value)  # the first bound >= value: Prometheus' le
        with self._lock:
            self.counts[i] += 1
            self.sum += value


class _Family:
    """One labelled metric; children by label values, made on first use."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}")
            with self._lock:
                child = self._children.setdefault(values, self._child())
        return child

    def _child(self) -> Any:
        raise NotImplementedError

    def children(self) -> list[tuple[dict[str, str], Any]]:
        with self._lock:
            items = list(self._children.items())
        return [(dict(zip(self.labelnames, values, strict=True)), c) for values, c in items]


class Counter(_Family):
    def _child(self) -> _CounterChild:
        return _CounterChild()

    def metric(self) -> Metric:
        metric = Metric(self.name, self.documentation, "counter")
        for labels, child in self.children():
            metric.add_sample(f"{self.name}_total", labels, child.value)
        return metric


class Histogram(_Family):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float]) -> None:
        super().__init__(name, documentation, labelnames)
        self.bounds = tuple(float(b) for b in buckets)

    def _child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def metric(self) -> Metric:
        metric = Metric(self.name, self.documentation, "histogram")
        les = [*map(floatToGoString, self.bounds), "+Inf"]
        for labels, child in self.children():
            with child._lock:
                counts, total = list(child.counts), child.sum
            running = 0
            for le, count in zip(les, counts, strict=True):
                running += count
                metric.add_sample(f"{self.name}_bucket", {**labels, "le": le}, running)
            metric.add_sample(f"{self.name}_count", labels, running)
            metric.add_sample(f"{self.name}_sum", labels, total)
        return metric


class _Collector:
    def __init__(self, families: list[Counter | Histogram]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.metric()


REQUESTS = Counter("smallserve_requests", "Calls answered (gRPC and HTTP), by API, method, "
                   "model and status code", ["api", "method", "model", "code"])
# calls refused before any handler ran (no model is known then): bad bearer tokens, request bytes
# that do not parse
REFUSED = Counter("smallserve_refused", "gRPC calls refused before reaching a handler, by "
                  "method and status code", ["method", "code"])
REQUEST_SECONDS = Histogram("smallserve_request_seconds", "Time from call to answer",
                            ["api", "method", "model"], LATENCY_BUCKETS)
QUEUE_SECONDS = Histogram("smallserve_queue_seconds", "Time a call waited for its model run",
                          ["model"], LATENCY_BUCKETS)
COMPUTE_SECONDS = Histogram("smallserve_compute_seconds", "onnxruntime time of the run that "
                            "answered a call", ["model"], LATENCY_BUCKETS)
BATCH_SIZE = Histogram("smallserve_batch_size", "Rows per model run (after dynamic batching)",
                       ["model"], BATCH_BUCKETS)
INFERENCES = Counter("smallserve_inferences", "Rows inferred", ["model"])
REGISTRY.register(_Collector([REQUESTS, REFUSED, REQUEST_SECONDS, QUEUE_SECONDS,  # type: ignore[arg-type]
                              COMPUTE_SECONDS, BATCH_SIZE, INFERENCES]))
MODELS_LOADED = Gauge("smallserve_models_loaded", "Model versions loaded", registry=REGISTRY)
READY = Gauge("smallserve_ready", "1 once models are loaded and warmed up", registry=REGISTRY)


@lru_cache(maxsize=4096)
def labelled(metric: Any, *values: str) -> Any:
    """metric.labels(*values), remembered. Label values are bounded (models known to the
    registry, fixed methods and codes)."""
    return metric.labels(*values)


def count_call(api: str, method: str, model: str, code: str, seconds: float) -> None:
    """One answered call of any front end: method and model from a fixed set (the model ""
    unless the registry knows it), code the gRPC status name."""
    labelled(REQUESTS, api, method, model, code).inc()
    labelled(REQUEST_SECONDS, api, method, model).observe(seconds)


def track_models(count: Callable[[], int]) -> None:
    MODELS_LOADED.set_function(count)


def serve_metrics(host: str, port: int) -> object:
    """Start the /metrics HTTP endpoint in a daemon thread; returns the HTTP server."""
    server, _ = start_http_server(port, addr=host, registry=REGISTRY)
    return server
