"""Runs tests/oip (tritonclient over gRPC) and tests/kserve (the kserve SDK over REST), where
standard clients talk to a real server, each in a process of its own.

Each client registers the same `inference.*` protobuf symbols as the server's own stubs, and
protobuf allows a symbol once per process.
"""

import os
import subprocess
import sys

import pytest

from tests.conftest import CLIENT_FOLDERS, OIP_ENV, ROOT


@pytest.mark.parametrize("folder", CLIENT_FOLDERS)
def test_open_inference_protocol_with_standard_clients(folder):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/{folder}"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, OIP_ENV: folder},
        timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
