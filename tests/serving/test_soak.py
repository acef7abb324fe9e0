"""Load and soak: a mixed workload at concurrency 64 against a real server, from a separate
process. No unexpected status, resident memory after the warm-up grows less than 10%, and the
latency percentiles are printed (pytest -s shows them).

SMALLSERVE_SOAK_SECONDS sets the measured time of the default run (a few seconds); the 60 s
run is marked slow and runs with `pytest -m slow tests/serving/test_soak.py`.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import publish_classifier

CONCURRENCY = 64


def soak(tmp_path, seconds: float, warmup: float) -> dict:
    repo = tmp_path / "repo"
    publish_classifier(repo, "digits", hidden=256, depth=2)
    with ServerProcess(repo, "--poll-interval", "1") as server:
        result = subprocess.run(
            [sys.executable, "-m", "tests.serving.soak", "--target", server.target,
             "--model", "digits", "--server-pid", str(server.process.pid),
             "--seconds", str(seconds), "--warmup", str(warmup),
             "--concurrency", str(CONCURRENCY)],
            cwd=ROOT, capture_output=True, text=True, timeout=seconds + warmup + 120)
        assert result.returncode == 0, result.stderr[-3000:]
        assert server.process.poll() is None, server.log[-3000:]
        log = server.log
    report = json.loads(result.stdout)
    print(f"\nsoak {seconds:.0f}s at concurrency {CONCURRENCY}: " + json.dumps(report))
    assert report["calls"] > 0
    assert report["unexpected"] == 0, report
    assert report["rss_growth"] < 0.10, report
    assert "Traceback" not in log
    return report


def test_mixed_load_short(tmp_path):
    seconds = float(os.environ.get("SMALLSERVE_SOAK_SECONDS", "4"))
    soak(tmp_path, seconds, warmup=min(10.0, max(2.0, seconds / 4)))


@pytest.mark.slow
def test_mixed_load_one_minute(tmp_path, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("60 s soak: run with -m slow")
    soak(tmp_path, 60.0, warmup=10.0)
