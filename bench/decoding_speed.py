"""Translation sentences/s, greedy and beam 4, side by side: in-process through the server's
own runner (serving.runners.TranslatorRunner: SentencePiece, encoder.onnx once, search over
decoder_step.onnx) and through the server's Translate RPC.

A second table is the server under concurrent one-sentence greedy Translate calls (load from
separate processes, bench.load), with dynamic batching off and on: with it on, calls arriving
during a decode share the next one (serving.runners.translator.SentenceBatching).

The model is the real-data architecture (GRU, additive attention, 3000 pieces), untrained,
with its end-of-sentence logit suppressed (bench.models): every sentence of every decode runs
exactly MAX_LENGTH steps, so greedy and beam 4 do the same number of steps and differ only in
the rows per step (1 vs 4 per sentence) and the search work. Sources are 6-14 pieces + EOS.
Both the in-process runner and the server run onnxruntime on THREADS threads.

A third table compares the decoder step through session.run with the same step through
onnxruntime IO binding (memory and mask bound once per decode, outputs bound on the CPU). On
the CPU session.run already reads numpy inputs in place, and binding measured no faster (0.9-1.1x
across runs), so serving does not use it. On CUDA it could keep the encoder memory on the
device across steps, but the search picks tokens and reorders beams in numpy, so log-probs,
state and attention cross to the host every step anyway; without a GPU here to measure the
gain, serving keeps the one code path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench import models
from bench.load import TRANSLATE_STEPS, generate_load
from bench.serving_overhead import running_server
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.client.messages import translate_request
from serving.decoding import beam_search, greedy_decode
from serving.preprocess.tensors import pad_batch
from serving.runners import TranslatorRunner, load_runner
from serving.runtime.session import SessionConfig
from training.timing import interleaved

MAX_LENGTH = TRANSLATE_STEPS
BEAM = 4
# onnxruntime threads, in-process and in the server alike: one, as in eager_vs_onnxruntime's
# quick run; on a shared machine a second thread measures the neighbours more than the search
THREADS = 1
STEP_OUTPUTS = ["log_probs", "new_state", "attention"]


def _speed_row(where: str, batch: int, greedy: float, beam: float) -> dict[str, Any]:
    return {"benchmark": "decoding_speed", "where": where, "batch": batch,
            "max_length": MAX_LENGTH, "ort_threads": THREADS, "greedy_ms": round(greedy, 2),
            f"beam{BEAM}_ms": round(beam, 2),
            "greedy_sentences_s": round(batch / greedy * 1e3, 1),
            f"beam{BEAM}_sentences_s": round(batch / beam * 1e3, 1),
            f"beam{BEAM}_cost_x": round(beam / greedy, 2)}


def speed_rows(runner: TranslatorRunner, target: str | None, texts: list[str],
               repeats: int) -> list[dict[str, Any]]:
    """Greedy and beam, in-process and (given a target) served, all four interleaved."""
    fns: dict[str, Callable[[], object]] = {
        "in-process greedy": partial(runner.translate, texts, 1, MAX_LENGTH),
        "in-process beam": partial(runner.translate, texts, BEAM, MAX_LENGTH)}
    with grpc.insecure_channel(target) if target else nullcontext() as channel:
        if channel is not None:
            stub = pb_grpc.ModelServiceStub(channel)
            for name, beam in (("server greedy", 1), ("server beam", BEAM)):
                request = translate_request(runner.name, texts, 0, beam, MAX_LENGTH)
                fns[name] = partial(stub.Translate, request, timeout=600)
        t = interleaved(fns, repeats, warmup=1)
    return [_speed_row(where, len(texts), t[f"{where} greedy"].median_ms,
                       t[f"{where} beam"].median_ms)
            for where in ("in-process", "server") if f"{where} greedy" in t]


def concurrency_rows(repository: Path, model: str, quick: bool) -> list[dict[str, Any]]:
    """Sentences/s of concurrent one-sentence greedy calls, batching off vs on."""
    rows, base = [], {}
    for batching in ("off", "on"):
        with running_server(repository, "--intra-op-threads", str(THREADS), "--batching",
                            batching) as target:
            for concurrency in ((32,) if quick else (1, 8, 32)):
                load = generate_load(target, model, "translate", concurrency,
                                     3.0 if quick else 6.0)
                row = {"benchmark": "translate_concurrency", "batching": batching,
                       "concurrency": concurrency, "max_length": MAX_LENGTH,
                       "sentences_s": load["throughput_rps"], "p50_ms": load["p50_ms"],
                       "p99_ms": load["p99_ms"], "errors": load["errors"]}
                if batching == "off":
                    base[concurrency] = load["throughput_rps"]
                else:
                    row["vs_no_batching"] = round(load["throughput_rps"] / base[concurrency], 2)
                rows.append(row)
    return rows


class BoundStep:
    """The decoder step through IO binding: memory and mask are bound once and re-bound only
    when the search hands over new arrays (rows dropped); outputs are bound on the CPU."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.binding = session.io_binding()
        self.memory: np.ndarray | None = None

    def __call__(self, prev: np.ndarray, state: np.ndarray, memory: np.ndarray,
                 mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.binding
        if memory is not self.memory:
            self.memory = memory
            b.bind_cpu_input("memory", memory)
            b.bind_cpu_input("src_mask", mask)
        b.bind_cpu_input("prev_ids", prev)
        b.bind_cpu_input("state", state)
        for name in STEP_OUTPUTS:
            b.bind_output(name, "cpu")
        self.session.run_with_iobinding(b)
        log_probs, new_state, attention = b.copy_outputs_to_cpu()
        return log_probs, new_state, attention


def io_binding_rows(runner: TranslatorRunner, texts: list[str],
                    repeats: int) -> list[dict[str, Any]]:
    src, lengths = pad_batch(runner.prepare(texts).ids, runner.tokenizer.pad_id)
    memory, state = runner.sessions["encoder"].run(
        ["memory", "state"], {"src_ids": src, "src_lengths": lengths})
    mask = np.arange(src.shape[1])[None, :] < lengths[:, None]
    limits = np.full(len(texts), MAX_LENGTH, np.int64)
    decoder = runner.sessions["decoder_step"]
    bos, eos = runner.bos_id, runner.eos_id

    def decode(make_step: Callable[[], Any], beam: int) -> object:
        if beam == 1:
            return greedy_decode(make_step(), state, memory, mask, bos, eos, limits)
        return beam_search(make_step(), state, memory, mask, bos, eos, limits, beam, 0.6)

    rows = []
    for beam in (1, BEAM):
        t = interleaved({"run": partial(decode, lambda: runner.step, beam),
                         "io_binding": partial(decode, partial(BoundStep, decoder), beam)},
                        repeats, warmup=1)
        run, bound = t["run"].median_ms, t["io_binding"].median_ms
        rows.append({"benchmark": "decoder_io_binding", "batch": len(texts),
                     "search": "greedy" if beam == 1 else f"beam {beam}",
                     "max_length": MAX_LENGTH, "session_run_ms": round(run, 2),
                     "io_binding_ms": round(bound, 2), "io_binding_speedup": round(run / bound, 2),
                     "provider": runner.providers[0]})
    return rows


def run(quick: bool = False, batches: tuple[int, ...] = (1, 32), through_server: bool = True,
        translation: models.Translation | None = None) -> list[dict[str, Any]]:
    t = translation or models.translation()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        version = models.publish_translation(repository, t)
        runner = load_runner(version, SessionConfig(intra_op_threads=THREADS))
        assert isinstance(runner, TranslatorRunner)
        serving = running_server(repository, "--intra-op-threads", str(THREADS))
        with serving if through_server else nullcontext() as target:
            for batch in batches:
                texts = t.sentences(batch, seed=batch)
                repeats = (10 if batch < 32 else 5) if quick else (30 if batch < 32 else 10)
                rows += speed_rows(runner, target, texts, repeats)
        if through_server:
            rows += concurrency_rows(repository, runner.name, quick)
        largest = t.sentences(max(batches), seed=max(batches))
        rows += io_binding_rows(runner, largest, 5 if quick else 10)
    return rows
