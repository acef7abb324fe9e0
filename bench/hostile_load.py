"""One caller flooding a translator must not stall the others: six load processes send the
longest source at beam 64 (200 steps each) back to back, while a seventh measures one-word
greedy Translate calls and one-image Classify calls (issue 15's scenario). Measured with
iteration-level batching (--decode-batching step: calls join and leave the step batch between
decoder steps) and without it (merge: whole decodes), side by side on the same models; then
the throughput of 32 concurrent one-sentence callers in both modes, with identical sentences
and with sentences of 5-35 steps, both servers up at once and rounds interleaved: this
machine's throughput drifts by 15% within minutes, so one run per mode could not tell a 10%
difference, and `vs_merge` is the median of the rounds' ratios."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import models
from bench.load import generate_load
from bench.serving_overhead import running_server

MODES = ("step", "merge")


def run(quick: bool = False, seconds: float | None = None,
        translation: models.Translation | None = None) -> list[dict[str, Any]]:
    seconds = seconds or (4.0 if quick else 15.0)
    translation = translation or models.translation()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp)
        models.publish_translation(repository, translation)
        models.publish_classifier(repository, "mlp")
        for mode in MODES:
            with running_server(repository, "--decode-batching", mode) as target:
                rows += _flooded(target, mode, seconds)
        rows += _callers(repository, seconds / 2, 1 if quick else 3)
    return rows


# the 32 callers' calls: identical sentences (merge's best case: a merged decode's sentences
# all end at its last step) and sentences whose lengths differ from call to call
CALLER_SENTENCES = {"identical": "translate", "5-35 steps": "translate-mixed"}


def _callers(repository: Path, seconds: float, rounds: int) -> list[dict[str, Any]]:
    """32 one-sentence callers per mode and kind of sentences, `seconds` per mode split over
    interleaved rounds; each mode's row is its median round."""
    rows = []
    with ExitStack() as servers:
        targets = {mode: servers.enter_context(
            running_server(repository, "--decode-batching", mode)) for mode in MODES}
        for target in targets.values():  # sessions and connections warm
            generate_load(target, "bench-translate", "translate", 32, 1.0)
        for sentences, api in CALLER_SENTENCES.items():
            measured: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
            for _ in range(rounds):
                for mode, target in targets.items():
                    measured[mode].append(generate_load(target, "bench-translate", api, 32,
                                                        seconds / rounds))
            rows += _median_rounds(measured, sentences)
    return rows


def _median_rounds(measured: dict[str, list[dict[str, Any]]],
                   sentences: str) -> list[dict[str, Any]]:
    rows = []
    for mode in MODES:
        ordered = sorted(measured[mode], key=lambda r: r["throughput_rps"])
        rows.append({"benchmark": "translate_32_callers", "sentences": sentences,
                     "decode_batching": mode, **ordered[len(ordered) // 2],
                     "rounds_rps": [r["throughput_rps"] for r in measured[mode]]})
    ratios = [s["throughput_rps"] / m["throughput_rps"]
              for s, m in zip(measured["step"], measured["merge"], strict=True)
              if m["throughput_rps"]]
    rows[0]["vs_merge"] = round(statistics.median(ratios), 2) if ratios else "-"
    return rows


def _flooded(target: str, mode: str, seconds: float) -> list[dict[str, Any]]:
    """The probes' latencies while six processes flood the translator."""
    flood: dict[str, Any] = {}

    def flooding() -> None:
        try:
            flood.update(generate_load(target, "bench-translate", "translate-flood", 6,
                                       seconds + 2, processes=6, channels=1))
        except Exception as e:  # merged decodes of this size can outlast the load's timeout
            flood["errors"] = f"did not finish: {type(e).__name__}"

    thread = threading.Thread(target=flooding)
    thread.start()
    time.sleep(1.0)  # the flood is running
    probes = {}
    for api, model in (("translate-short", "bench-translate"), ("smallserve", "bench-mlp")):
        probes[api] = generate_load(target, model, api, 1, seconds / 2, processes=1,
                                    channels=1)
    thread.join()
    return [{"benchmark": "flooded_translator", "decode_batching": mode, "calls": name,
             **result} for name, result in (("one-word greedy Translate",
                                             probes["translate-short"]),
                                            ("one-image Classify", probes["smallserve"]),
                                            ("flood: beam 64, 97 pieces", flood))]
