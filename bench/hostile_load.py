"""One caller flooding a translator must not stall the others: six load processes send the
longest source at beam 64 (200 steps each) back to back, while a seventh measures one-word
greedy Translate calls and one-image Classify calls (issue 15's scenario). Measured with
iteration-level batching (--decode-batching step: calls join and leave the step batch between
decoder steps) and without it (merge: whole decodes), side by side on the same models; then
the throughput of 32 concurrent one-sentence callers in both modes."""

from __future__ import annotations

import tempfile
import threading
import time
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
                throughput = generate_load(target, "bench-translate", "translate", 32,
                                           seconds / 2)
                rows.append({"benchmark": "translate_32_callers", "decode_batching": mode,
                             **throughput})
    step, merge = (next(r for r in rows if r["benchmark"] == "translate_32_callers"
                        and r["decode_batching"] == m) for m in MODES)
    step["vs_merge"] = round(step["throughput_rps"] / merge["throughput_rps"], 2) \
        if merge["throughput_rps"] else "-"
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
