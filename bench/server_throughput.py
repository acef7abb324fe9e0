"""The server under concurrent load, with and without dynamic batching, through both APIs."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.serving_overhead import ROOT, publish_untrained, running_server

CONCURRENCY = (1, 8, 32, 128)


def run(quick: bool = False) -> list[dict[str, Any]]:
    seconds = 2.0 if quick else 8.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        publish_untrained(repository, "mlp")
        for batching in ("off", "on"):
            with running_server(repository, "--batching", batching) as target:
                for api in ("smallserve", "oip"):
                    for concurrency in CONCURRENCY:
                        out = subprocess.run(
                            [sys.executable, "-m", "bench.load", target, "bench-mlp", api,
                             str(concurrency), str(seconds)],
                            cwd=ROOT, capture_output=True, text=True, check=True)
                        rows.append({"benchmark": "server_throughput", "model": "bench-mlp",
                                     "batching": batching, "api": api,
                                     "concurrency": concurrency, **json.loads(out.stdout)})
    by_key = {(r["batching"], r["api"], r["concurrency"]): r for r in rows}
    for r in rows:
        if r["batching"] == "on":
            base = by_key[("off", r["api"], r["concurrency"])]["throughput_rps"]
            r["vs_no_batching"] = round(r["throughput_rps"] / base, 2) if base else None
    return rows
