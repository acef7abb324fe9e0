"""Score a published canvas captioner THROUGH A RUNNING SERVER, as its users see it:

    python -m training.evaluate_caption --server localhost:8001 \
        --version-dir exported/caption-multidigit/1 [--data-dir MNIST_DIR] [--beam-size K]

The held-out test canvases are drawn again from the canvas settings in the version's manifest
(each split has its own random stream, so only the test split is drawn), sent as pixels to the
Caption RPC in batches, and scored from the served captions and attention maps: exact match,
attention localisation, BLEU-1..4, and the largest |sum of one served attention map - 1|.
Printed beside the figures the manifest recorded from the exported graphs in-process: the two
must agree, since the server runs the same graphs and the same search.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from serving.client import Client
from serving.repository import MANIFEST_FILE, CaptionDecoding
from training.caption_metrics import attention_localisation, corpus_bleu, exact_match
from training.data.captions import canvas_split, tokenize
from training.data.mnist import load_mnist
from training.data.multidigit import make_multidigit

REQUEST_IMAGES = 64  # canvases per Caption call: 64 x 64 x 64 bytes, well inside message limits


def test_canvases(manifest: dict[str, Any], data_dir: Path | None) -> Any:
    """The run's held-out canvases, from the manifest's settings and the same MNIST digits."""
    s = manifest["training"]["data"]
    return canvas_split(make_multidigit(
        load_mnist(data_dir), (0, 0, s["canvases"]["test"]), seed=s["canvas_seed"],
        canvas_size=s["canvas_size"], min_digits=s["min_digits"], max_digits=s["max_digits"],
        max_overlap=s["max_overlap"]).test)


def evaluate_served(client: Client, model: str, version: int, split: Any,
                    beam_size: int = 0) -> dict[str, Any]:
    words: list[list[str]] = []
    attention: list[np.ndarray] = []
    worst_sum = 0.0
    grid: tuple[int, int] = (0, 0)
    for start in range(0, len(split), REQUEST_IMAGES):
        pixels = split.images[start:start + REQUEST_IMAGES]
        reply = client.caption(model, pixels=pixels, beam_size=beam_size, version=version)
        grid = tuple(reply["grid"])  # type: ignore[assignment]
        for c in reply["captions"]:
            att = np.asarray(c["attention"], np.float64).reshape(len(c["tokens"]),
                                                                 grid[0] * grid[1])
            if len(att):
                worst_sum = max(worst_sum, float(np.abs(att.sum(axis=1) - 1).max()))
            # the served tokens, one per attention row (the text may leave some out)
            words.append(list(c["tokens"]))
            attention.append(att)
    refs = [[tokenize(c) for c in r] for r in split.references]
    return {"n_test": len(split), "exact_match": exact_match(words, refs),
            **attention_localisation(words, attention, [r[0] for r in refs], split.boxes,
                                     split.images.shape[2:], grid),
            **corpus_bleu(words, refs), "max_attention_sum_error": worst_sum}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate_caption",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="HOST:PORT of a running server")
    parser.add_argument("--version-dir", type=Path, required=True,
                        help="the served version's folder, REPOSITORY/NAME/N (its manifest)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the MNIST IDX folder the run drew its canvases from (default: "
                             "the bundled digits)")
    parser.add_argument("--beam-size", type=int, default=0,
                        help="0: the version's default beam (the published figures' beam); "
                             "1: greedy")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    manifest = json.loads((args.version_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    if manifest.get("task") != "caption" or manifest["metrics"].get("n_test") is None or \
            "canvases" not in manifest["training"]["data"]:
        print(f"error: {args.version_dir} is not a captioner trained on digit canvases",
              file=sys.stderr)
        return 1
    model, version = args.version_dir.parent.name, int(args.version_dir.name)
    with Client(args.server, timeout=300) as client:
        served = evaluate_served(client, model, version, test_canvases(manifest, args.data_dir),
                                 args.beam_size)
    default_beam = CaptionDecoding.from_dict(manifest.get("decoding", {})).default_beam_size
    recorded = manifest["metrics"] if args.beam_size in (0, default_beam) else \
        manifest["metrics"]["greedy"] if args.beam_size == 1 else {}
    if args.json:
        print(json.dumps({"served": served, "recorded_in_process": {
            k: recorded.get(k) for k in served if k in recorded}}))
        return 0
    print(f"{model} version {version} through {args.server}: {served['n_test']} held-out "
          f"canvases (served | recorded in-process)")
    for key in ("exact_match", "attention_localisation", "bleu4"):
        rec = recorded.get(key)
        print(f"  {key:<24} {served[key]:.4f} | " + (f"{rec:.4f}" if rec is not None else "-"))
    print(f"  largest |attention map sum - 1| {served['max_attention_sum_error']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
