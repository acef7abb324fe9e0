"""`python -m serving` as a real process on a real port, as an operator would start it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, repository: Path, *args: str, log_path: Path | None = None,
                 env: dict[str, str] | None = None,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        """env: extra environment variables; credentials: for a TLS server's health probe."""
        self.port = free_port()
        self.http_port = free_port() if "--http-port" not in args else 0
        self.extra_env = env or {}
        self.credentials = credentials
        self.log_path = log_path or repository.parent / f"server-{self.port}.log"
        self.args = [sys.executable, "-m", "serving", "--repository", str(repository),
                     "--host", "127.0.0.1", "--port", str(self.port),
                     *([] if "--metrics-port" in args else ["--metrics-port", "0"]),
                     *([] if "--http-port" in args else ["--http-port", str(self.http_port)]),
                     *args]
        self.process: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The REST port's base URL (its Open Inference Protocol lives under /v2)."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, wait: bool = True, timeout: float = 60) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(self.args, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_serving(timeout)
        return self

    def health(self, service: str = "") -> str:
        channel = grpc.secure_channel(self.target, self.credentials) if self.credentials \
            else grpc.insecure_channel(self.target)
        with channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log}")
            try:
                if self.health() == "SERVING":
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not SERVING after {timeout}s:\n{self.log}")

    @property
    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
