"""--processes: several workers share one port and all of them answer; SIGTERM drains all."""

import re
import signal
import time
import urllib.request

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
