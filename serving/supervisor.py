"""--processes N: N server processes on one port, because Python gRPC uses one core a process.

The supervisor runs no gRPC itself. It starts each worker as `python -m serving` with the same
arguments plus SO_REUSEPORT, its share of the cores for onnxruntime and its own metrics port;
the kernel spreads new connections over the workers. A worker that dies is restarted in its
slot, after a pause that doubles with each quick death (as gunicorn's arbiter replaces a dead
worker, instead of taking the others down); a slot whose workers keep dying at start halts
the supervisor, which then exits with that status. Workers end when the supervisor dies
(serving.parent_watch). SIGTERM/SIGINT are passed on and the supervisor exits once every
worker has drained, with the worst worker's exit status.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from serving.config import ServerConfig
from serving.parent_watch import SUPERVISOR_PID_ENV

log = logging.getLogger("serving.supervisor")

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 30.0  # a worker that lived this long was not failing at start
MAX_QUICK_DEATHS = 5  # in a row, in one slot: a worker that cannot start (port, config)
POLL_SECONDS = 0.2


def worker_command(argv: list[str], config: ServerConfig, index: int) -> list[str]:
    extra = ["--processes", "1", "--reuse-port", "on"]
    share = max(1, (os.cpu_count() or 1) // config.processes)
    extra += ["--core-share", str(share)]
    metrics_port = config.metrics_port + index if config.metrics_port else 0
    extra += ["--metrics-port", str(metrics_port)]
    return [sys.executable, "-m", "serving", *argv, *extra]  # later flags win in argparse


@dataclass
class Slot:
    """One worker's place: its command, the process now in it, and its recent deaths."""

    index: int
    command: list[str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0
    last_code: int = 0

    def start(self) -> None:
        env = {**os.environ, "SMALLSERVE_WORKER": str(self.index),
               SUPERVISOR_PID_ENV: str(os.getpid())}
        self.process = subprocess.Popen(self.command, env=env)
        self.started = time.monotonic()

    def reap(self) -> bool:
        """True when the worker in this slot has just died; schedules its replacement."""
        if self.process is None or (code := self.process.poll()) is None:
            return False
        lived = time.monotonic() - self.started
        self.quick_deaths = self.quick_deaths + 1 if lived < STABLE_SECONDS else 1
        self.last_code = code
        delay = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (self.quick_deaths - 1))
        self.restart_at = time.monotonic() + delay
        log.error("worker %d (pid %d) exited with %s after %.1fs; restarting it in %.1fs",
                  self.index, self.process.pid, code, lived, delay)
        self.process = None
        return True


def supervise(argv: list[str], config: ServerConfig) -> int:
    if config.port == 0:
        log.error("--processes needs a fixed --port: workers must share one")
        return 2
    if config.http_port < 0:
        log.error("--processes needs a fixed --http-port (or 0): workers must share one")
        return 2
    slots = [Slot(i, worker_command(argv, config, i)) for i in range(config.processes)]
    for slot in slots:
        slot.start()
    log.info("started %d workers on port %d: pids %s", len(slots), config.port,
             ", ".join(str(s.process.pid) for s in slots if s.process))

    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:  # each worker is already draining; a second signal would cut that short
            return
        stopping = True
        for s in slots:
            if s.process is not None and s.process.poll() is None:
                s.process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    halted = None
    while not stopping:
        for slot in slots:
            if slot.reap() and slot.quick_deaths >= MAX_QUICK_DEATHS:
                log.error("worker %d died %d times in a row within %.0fs of starting; "
                          "stopping", slot.index, slot.quick_deaths, STABLE_SECONDS)
                halted = slot.last_code
                forward(signal.SIGTERM, None)
                break
            if slot.process is None and not stopping and time.monotonic() >= slot.restart_at:
                slot.start()
                log.info("worker %d restarted: pid %d", slot.index, slot.process.pid)
        time.sleep(POLL_SECONDS)
    codes = [s.process.wait() for s in slots if s.process is not None]
    log.info("workers exited with %s", codes)
    return max([abs(c) for c in codes] + ([abs(halted) or 1] if halted is not None else []))
