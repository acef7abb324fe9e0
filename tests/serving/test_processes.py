"""--processes: several workers share one port and all of them answer; SIGTERM drains all."""

import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np

from serving.client import Client
from tests.serving.server_process import ServerProcess, free_port
from tests.serving.synthetic import publish_classifier


def requests_served(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) \
        .read().decode()
    return sum(float(v) for v in re.findall(
        r'^smallserve_requests_total\{[^}]*method="Classify"[^}]*\} (\S+)$', text, re.M))


def test_workers_share_the_port(tmp_path):
    publish_classifier(tmp_path / "repo", "m")
    metrics_port = free_port()
    server = ServerProcess(tmp_path / "repo", "--processes", "2", "--metrics-port",
                           str(metrics_port))
    with server:
        deadline = time.monotonic() + 30
        while server.log.count("INFO serving: ready") < 2:  # both workers loaded
            assert time.monotonic() < deadline, server.log
            time.sleep(0.1)
        pixels = np.zeros((1, 28, 28), np.uint8)
        for _ in range(40):  # a new connection each time, so the kernel spreads them
            with Client(server.target) as client:
                assert client.classify("m", pixels=pixels)["version"] == 1
        served = [requests_served(metrics_port + i) for i in range(2)]
        assert sum(served) == 40 and all(n > 0 for n in served), served
        assert server.stop(signal.SIGTERM) == 0
    assert server.log.count("listening on 127.0.0.1") == 2
    assert server.log.count("INFO serving: stopped") == 2


def worker_pids(log: str) -> list[int]:
    started = re.search(r"started \d+ workers on port \d+: pids ([\d, ]+)", log)
    assert started, log
    return [int(p) for p in started.group(1).split(", ")]


def alive(pid: int) -> bool:
    try:  # a zombie has exited: only its parent's wait() is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_ready(server: ServerProcess, count: int) -> None:
    deadline = time.monotonic() + 60
    while server.log.count("INFO serving: ready") < count:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.1)


def test_killing_the_supervisor_ends_its_workers(tmp_path):
    publish_classifier(tmp_path / "repo", "m")
    server = ServerProcess(tmp_path / "repo", "--processes", "2")
    with server:
        wait_ready(server, 2)
        pids = worker_pids(server.log)
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + 5
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [p for p in pids if alive(p)]
        for p in left:
            os.kill(p, signal.SIGKILL)
    assert left == [], f"workers {left} outlived their supervisor by 5 s"
    # each drained: the parent-death signal comes once per supervisor thread, and that must
    # not read as an operator's second SIGTERM ("exit at once")
    assert server.log.count("INFO serving: stopped") == 2, server.log
    assert "exiting at once" not in server.log, server.log


def test_a_worker_that_dies_is_replaced(tmp_path):
    publish_classifier(tmp_path / "repo", "m")
    metrics_port = free_port()
    server = ServerProcess(tmp_path / "repo", "--processes", "2", "--metrics-port",
                           str(metrics_port))
    with server:
        wait_ready(server, 2)
        victim = worker_pids(server.log)[0]
        os.kill(victim, signal.SIGKILL)
        wait_ready(server, 3)  # its replacement loaded the models
        assert re.search(rf"worker 0 \(pid {victim}\) exited with -9 .*restarting it", server.log)
        pixels = np.zeros((1, 28, 28), np.uint8)
        for _ in range(40):  # new connections, spread by the kernel over both workers
            with Client(server.target) as client:
                assert client.classify("m", pixels=pixels)["version"] == 1
        assert requests_served(metrics_port) > 0  # worker 0's replacement answered some
        assert server.stop(signal.SIGTERM) == 0
