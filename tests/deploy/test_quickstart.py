"""The README's first command after the install: scripts/quickstart.sh trains a model of every
kind on the bundled data, serves them on a real port, queries each with the client and stops."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.serving.server_process import free_port

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("caption-multidigit", "mnist-mlp", "mnist-softmax", "tagger-multidigit",
          "translate-toy")


def test_quickstart_trains_serves_and_queries_every_kind_of_model(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHON": sys.executable, "REPOSITORY": str(tmp_path / "repo"),
           "RUNS": str(tmp_path / "runs"), "PORT": str(port),
           "HTTP_PORT": str(free_port()),
           "SMALLSERVE_METRICS_PORT": "0"}
    proc = subprocess.run(["bash", "scripts/quickstart.sh"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert '"model_name": "translate-toy"' in out  # the curl call to the REST port
    assert out.rstrip().endswith(f"the sample images and attention plots in "
                                 f"{tmp_path / 'runs' / 'quickstart'}/")
    for name in MODELS:
        assert (tmp_path / "repo" / name / "1" / "manifest.json").is_file(), name
        assert f'"name": "{name}"' in out  # listed by the server
    # every query answered: 3 digits, 2 canvases tagged and captioned, 1 sentence translated
    assert out.count('"input": ') >= 3 + 2 + 2
    assert out.count('"tags": ') == 2
    assert out.count('"text": ') == 2 + 1
    for plot in ("caption-attention.png", "translation-attention.png"):
        assert (tmp_path / "runs" / "quickstart" / plot).stat().st_size > 1000
    # the server drained and exited on SIGTERM: nothing listens on its port any more
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
