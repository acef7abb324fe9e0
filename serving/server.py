"""The server: one gRPC port with the project's API, the Open Inference Protocol,
grpc.health.v1 and reflection; one HTTP port with the Open Inference Protocol's REST form.

Start-up order matters to clients and orchestrators: the port opens first with health
NOT_SERVING (calls get UNAVAILABLE), models load and warm up, then health turns SERVING.
SIGTERM/SIGINT turn health NOT_SERVING, stop accepting calls, let in-flight ones finish
within the grace period, and return so the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from serving import metrics, security
from serving.api.generated.inference import grpc_service_pb2_grpc
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc
from serving.config import ServerConfig
from serving.execution import InferencePool
from serving.malformed import add_guarded
from serving.parent_watch import SUPERVISOR_GONE
from serving.preprocess.limits import set_input_limits
from serving.registry import ModelRegistry
from serving.services import http_service, inference_service, model_service
from serving.services.context import Limits, ServerContext

log = logging.getLogger("serving")
# SIGHUP too: a closed terminal or a process manager's hang-up drains, never kills mid-call
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# What a connection may cost before it earns a call: one that never completes its HTTP/2
# handshake is closed after 10 s (1,100 of them held every file descriptor before), an idle
# one after 5 minutes, and a client may open at most 1,024 streams at once per connection.
CONNECTION_OPTIONS = [
    ("grpc.server_handshake_timeout_ms", 10_000),
    ("grpc.max_connection_idle_ms", 300_000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_concurrent_streams", 1024),
]
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = ModelRegistry(config.repository, config.session,
                                      max_loaded_versions=config.max_loaded_versions,
                                      model_control=config.model_control)
        self.pool = InferencePool(config.workers, config.inline_below_us)
        self.ctx = ServerContext(self.registry, Limits(config.max_batch_size), self.pool,
                                 config.batching)
        self.metrics_http: Any = None
        self.http_runner: web.AppRunner | None = None
        self.http_port = 0
        self.health = health.aio.HealthServicer()
        self.services = [model_service.SERVICE_NAME, inference_service.SERVICE_NAME]
        self.port = 0
        limit = config.max_message_bytes
        set_input_limits(config.input_limits)
        # authentication first: a call without a token learns nothing, not even parse errors
        self.grpc = grpc.aio.server(interceptors=security.interceptors(config.security),
                                    options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # a second server on a taken port must fail, unless workers share it on purpose
            ("grpc.so_reuseport", int(config.reuse_port)),
            *CONNECTION_OPTIONS,
        ])
        # request parsing guarded per method (serving.malformed), built once here
        add_guarded(model_service_pb2_grpc.add_ModelServiceServicer_to_server,
                    model_service.ModelService(self.ctx), self.grpc)
        add_guarded(grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
                    inference_service.InferenceService(self.ctx), self.grpc)
        add_guarded(health_pb2_grpc.add_HealthServicer_to_server, self.health, self.grpc)
        reflection.enable_server_reflection(
            [*self.services, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME], self.grpc)

    async def start(self) -> int:
        address = f"{self.config.host}:{self.config.port}"
        try:
            credentials = security.server_credentials(self.config.security)
            self.port = self.grpc.add_secure_port(address, credentials) if credentials \
                else self.grpc.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {address}: {e}") from e
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.grpc.start()
        log.info("listening on %s:%d (repository %s, pid %d; %s)", self.config.host, self.port,
                 self.config.repository, os.getpid(), self.config.security.describe())
        if self.config.http_port:
            await self._start_http()
        if self.config.metrics_port:
            try:
                self.metrics_http = metrics.serve_metrics(self.config.host,
                                                          self.config.metrics_port)
            except OSError as e:
                raise OSError(f"cannot serve metrics on port {self.config.metrics_port}: "
                              f"{e}") from e
            metrics.track_models(lambda: len(self.registry.runners()))
            log.info("metrics on http://%s:%d/metrics", self.config.host,
                     self.metrics_http.server_port)
        return self.port

    async def _start_http(self) -> None:
        app = http_service.build_app(self.ctx, self.config.security,
                                     self.config.max_message_bytes, self.config.inspector)
        # handler_cancellation: a client that hangs up cancels its call, as on gRPC
        self.http_runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                                         shutdown_timeout=self.config.grace_period)
        await self.http_runner.setup()
        port = max(0, self.config.http_port)
        site = web.TCPSite(self.http_runner, self.config.host, port,
                           ssl_context=security.server_ssl_context(self.config.security),
                           reuse_port=self.config.reuse_port or None)
        try:
            await site.start()
        except OSError as e:
            raise OSError(f"cannot listen for HTTP on {self.config.host}:{port}: {e}") from e
        self.http_port = self.http_runner.addresses[0][1]
        scheme = "https" if self.config.security.tls else "http"
        log.info("Open Inference Protocol REST on %s://%s:%d/v2", scheme, self.config.host,
                 self.http_port)

    async def load_models(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.registry.refresh)
        for name in self.config.load_models:  # explicit model control
            await loop.run_in_executor(None, self.registry.load, name)
        self.ctx.ready = True
        metrics.READY.set(1)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        models = self.registry.models()
        if not models:
            log.warning("no loadable model in %s; serving none", self.config.repository)
        log.info("ready: %s", ", ".join(f"{n}@{m.latest}" for n, m in sorted(models.items()))
                 or "no models")

    async def watch_repository(self) -> None:
        loop = asyncio.get_running_loop()
        while self.config.poll_interval > 0:
            await asyncio.sleep(self.config.poll_interval)
            try:
                await loop.run_in_executor(None, self.registry.refresh)
            except Exception:
                log.exception("scanning %s failed", self.config.repository)

    async def stop(self) -> None:
        log.info("shutting down: finishing in-flight calls (grace %.1fs)",
                 self.config.grace_period)
        metrics.READY.set(0)
        self.ctx.ready = False  # REST readiness probes fail while draining, as gRPC health
        await self.health.enter_graceful_shutdown()
        # both ports stop taking calls at once; in-flight ones get the grace period
        await asyncio.gather(self.grpc.stop(self.config.grace_period),
                             *([self.http_runner.cleanup()] if self.http_runner else []))
        # the grace period is over: running decodes stop at their next step
        self.pool.abandon_all()
        self.pool.shutdown()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
        log.info("stopped")

    async def _set_health(self, status: int) -> None:
        for name in ["", *self.services]:
            await self.health.set(name, status)


async def serve(config: ServerConfig) -> None:
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # an operator who asks twice wants it gone now
            log.warning("second %s while draining: exiting at once", sig.name)
            os._exit(128 + sig)
        log.info("%s: draining", sig.name)
        stop.set()

    def on_supervisor_gone() -> None:
        if not stop.is_set():  # sent more than once by design (see parent_watch)
            log.info("supervisor gone: draining")
            stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(SUPERVISOR_GONE, on_supervisor_gone)
    await server.start()
    tasks = [asyncio.create_task(server.load_models()),
             asyncio.create_task(server.watch_repository())]
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
    if tasks[0].done() and tasks[0].exception() is not None:
        waiter.cancel()
        raise tasks[0].exception()
    await waiter
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await server.stop()
