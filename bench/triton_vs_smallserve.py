"""This server beside NVIDIA Triton on the same models, under the same load generator (separate
processes, bench.load), rounds interleaved: classifier ModelInfer calls at concurrency 1, 8 and
32, and one-sentence greedy translation calls at 32 (ModelInfer with a text tensor, 20 decoder
steps each: the bench models never end a sentence early).

Triton is the nvidia-pytriton wheel's tritonserver (serving.triton.wheel; Triton 2.51, CPU)
serving the python-backend form of the same repository (python -m serving.triton export): its
front end, dynamic batcher and python backend in front of this server's own runner. The wheel
has no onnxruntime backend, so the ONNX-platform form is not measured. Both sides run
onnxruntime with THREADS threads per operator and batch by default; Triton's ratio is its
throughput over this server's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from bench import models
from bench.load import generate_load
from bench.serving_overhead import running_server
from serving.triton.wheel import LocalTriton, ensure_env, free_port

THREADS = 1  # onnxruntime threads per operator, in both servers (as decoding_speed)
CLASSIFIER_CONCURRENCY = (1, 8, 32)
TRANSLATE_CONCURRENCY = 32
ROOT = Path(__file__).resolve().parents[1]


def workloads(translator: str) -> list[tuple[str, str, str, str, int]]:
    """(work, model, this server's load API, Triton's, concurrency)."""
    return [("classify (mlp)", "bench-mlp", "oip", "oip", c) for c in CLASSIFIER_CONCURRENCY] + \
        [("translate 1 sentence", translator, "oip-translate", "oip-translate-rows",
          TRANSLATE_CONCURRENCY)]


def run(quick: bool = False, seconds: float | None = None, rounds: int | None = None,
        translation: models.Translation | None = None) -> list[dict[str, Any]]:
    problem = ensure_env()
    if problem is not None:
        return [{"benchmark": "triton_vs_smallserve", "skipped": problem}]
    seconds = seconds or (2.0 if quick else 6.0)
    rounds = rounds or (1 if quick else 2)
    measured: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repository, triton_repository = Path(tmp) / "models", Path(tmp) / "triton"
        models.publish_classifier(repository, "mlp")
        translator = models.publish_translation(repository, translation or models.translation())
        _export(repository, triton_repository)
        todo = workloads(translator.parent.name)
        our_http = f"127.0.0.1:{free_port()}"
        with running_server(repository, "--intra-op-threads", str(THREADS), "--http-port",
                            our_http.rsplit(":", 1)[1]) as ours, \
                LocalTriton(triton_repository, Path(tmp)) as triton:
            for _ in range(rounds):
                for work, model, our_api, triton_api, concurrency in todo:
                    for server, target, api, http in (
                            ("smallserve", ours, our_api, our_http),
                            ("triton", triton.grpc_target, triton_api, triton.http_url)):
                        before = _counts(http, model)
                        load = generate_load(target, model, api, concurrency, seconds)
                        answered, runs = (a - b for a, b in zip(_counts(http, model), before,
                                                             strict=True))
                        load["rows_per_run"] = round(answered / runs, 1) if runs else "-"
                        measured.setdefault((work, concurrency, server), []).append(load)
    rows = []
    for work, _, _, _, concurrency in todo:
        ours_best = _best(measured[(work, concurrency, "smallserve")])
        for server in ("smallserve", "triton"):
            best = _best(measured[(work, concurrency, server)])
            rows.append({"benchmark": "triton_vs_smallserve", "work": work,
                         "concurrency": concurrency, "server": server, **best,
                         "throughput_vs_smallserve": round(
                             best["throughput_rps"] / ours_best["throughput_rps"], 2)
                         if ours_best["throughput_rps"] else "-",
                         "p50_vs_smallserve": round(best["p50_ms"] / ours_best["p50_ms"], 2)
                         if ours_best["p50_ms"] else "-"})
    return rows


def _export(repository: Path, out: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "serving.triton", "export", "--repository",
                             str(repository), "--out", str(out), "--form", "python",
                             "--intra-op-threads", str(THREADS), "--smallserve-path", str(ROOT)],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"python -m serving.triton export failed:\n{result.stderr}")


def _counts(http: str, model: str) -> tuple[int, int]:
    """Rows answered and model runs so far, from the statistics extension both servers speak
    (Triton: execute() calls of the python backend, each answering the requests it merged)."""
    with urllib.request.urlopen(f"http://{http}/v2/models/{model}/stats", timeout=10) as r:
        stats = json.load(r)["model_stats"]
    return (sum(int(s.get("inference_count", 0)) for s in stats),
            sum(int(s.get("execution_count", 0)) for s in stats))


def _best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the most throughput: the least disturbed by the rest of the machine."""
    return max(results, key=lambda r: r["throughput_rps"])
