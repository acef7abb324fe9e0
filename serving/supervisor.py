"""--processes N: N server processes on one port, because Python gRPC uses one core a process.

The supervisor runs no gRPC itself. It starts each worker as `python -m serving` with the same
arguments plus SO_REUSEPORT, its share of the cores for onnxruntime and its own metrics port;
the kernel spreads new connections over the workers. SIGTERM/SIGINT are passed on and the
supervisor exits once every worker has drained, with the worst worker's exit status.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from serving.config import ServerConfig

log = logging.getLogger("serving.supervisor")


def worker_command(argv: list[str], config: ServerConfig, index: int) -> list[str]:
    extra = ["--processes", "1", "--reuse-port", "on"]
    if config.session.intra_op_threads == 0:
        share = max(1, (os.cpu_count() or 1) // config.processes)
        extra += ["--intra-op-threads", str(share)]
    metrics_port = config.metrics_port + index if config.metrics_port else 0
    extra += ["--metrics-port", str(metrics_port)]
    return [sys.executable, "-m", "serving", *argv, *extra]  # later flags win in argparse


def supervise(argv: list[str], config: ServerConfig) -> int:
    if config.port == 0:
        log.error("--processes needs a fixed --port: workers must share one")
        return 2
    workers = [subprocess.Popen(worker_command(argv, config, i),
                                env={**os.environ, "SMALLSERVE_WORKER": str(i)})
               for i in range(config.processes)]
    log.info("started %d workers on port %d: pids %s", len(workers), config.port,
             ", ".join(str(w.pid) for w in workers))

    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:  # each worker is already draining; a second signal would cut that short
            return
        stopping = True
        for w in workers:
            if w.poll() is None:
                w.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # a worker that dies on its own takes the others down: a half-sized pool hides failures
    while all(w.poll() is None for w in workers):
        time.sleep(0.2)
    forward(signal.SIGTERM, None)
    codes = [w.wait() for w in workers]
    log.info("workers exited with %s", codes)
    return max(abs(c) for c in codes)
