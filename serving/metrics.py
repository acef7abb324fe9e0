"""Prometheus metrics, served in the text format on their own HTTP port (/metrics)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2,
                   5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter("smallserve_requests", "Calls answered (gRPC and HTTP), by API, method, "
                   "model and status code", ["api", "method", "model", "code"], registry=REGISTRY)
# calls refused before any handler ran (no model is known then): bad bearer tokens, request bytes
# that do not parse
REFUSED = Counter("smallserve_refused", "gRPC calls refused before reaching a handler, by "
                  "method and status code", ["method", "code"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("smallserve_request_seconds", "Time from call to answer",
                            ["api", "method", "model"], buckets=LATENCY_BUCKETS,
                            registry=REGISTRY)
QUEUE_SECONDS = Histogram("smallserve_queue_seconds", "Time a call waited for its model run",
                          ["model"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
COMPUTE_SECONDS = Histogram("smallserve_compute_seconds", "onnxruntime time of the run that "
                            "answered a call", ["model"], buckets=LATENCY_BUCKETS,
                            registry=REGISTRY)
BATCH_SIZE = Histogram("smallserve_batch_size", "Rows per model run (after dynamic batching)",
                       ["model"], buckets=BATCH_BUCKETS, registry=REGISTRY)
INFERENCES = Counter("smallserve_inferences", "Rows inferred", ["model"], registry=REGISTRY)
MODELS_LOADED = Gauge("smallserve_models_loaded", "Model versions loaded", registry=REGISTRY)
READY = Gauge("smallserve_ready", "1 once models are loaded and warmed up", registry=REGISTRY)


@lru_cache(maxsize=4096)
def labelled(metric: Any, *values: str) -> Any:
    """metric.labels(*values), remembered: prometheus_client builds and locks a label tuple on
    every labels() call, a measurable part of a call that takes a tenth of a millisecond.
    Label values are bounded (models known to the registry, fixed methods and codes)."""
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
