"""Runs tests/oip, where the standard tritonclient talks to a real server, in its own process.

tritonclient registers the same `inference.*` protobuf symbols as the server's own stubs, and
protobuf allows a symbol once per process.
"""

import os
import subprocess
import sys

from tests.conftest import OIP_ENV, ROOT


def test_open_inference_protocol_with_standard_clients():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/oip"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, OIP_ENV: "1"},
        timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
