"""python -m bench [--quick] [--json FILE]: every benchmark, a markdown table per benchmark."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

from bench import (
    decoding_speed,
    eager_vs_onnxruntime,
    hostile_load,
    per_call_cost,
    rest_vs_grpc,
    server_throughput,
    serving_overhead,
    triton_vs_smallserve,
)

BENCHMARKS = {
    "eager_vs_onnxruntime": eager_vs_onnxruntime.run,
    "server_vs_in_process": serving_overhead.run,
    "server_throughput": server_throughput.run,
    "per_call_cost": per_call_cost.run,
    "decoding_speed": decoding_speed.run,
    "rest_vs_grpc": rest_vs_grpc.run,
    "hostile_load": hostile_load.run,
    "triton_vs_smallserve": triton_vs_smallserve.run,
}


def markdown(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(c for r in rows for c in r if c != "benchmark"))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a minute)")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append",
                        help="run only these benchmarks")
    parser.add_argument("--json", type=Path, default=Path("runs/bench.json"),
                        help="where to write all rows as JSON")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": platform.platform(), "quick": args.quick}
    for name in args.only or BENCHMARKS:
        rows = BENCHMARKS[name](quick=args.quick)
        results[name] = rows
        # a benchmark may return more than one kind of row: one table per kind
        for kind in dict.fromkeys(r.get("benchmark", name) for r in rows):
            table = markdown([r for r in rows if r.get("benchmark", name) == kind])
            print(f"\n## {kind}\n\n{table}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
