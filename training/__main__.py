"""python -m training <task> [options]; `python -m training <task> --help` lists the options."""

from __future__ import annotations

import argparse
import sys

from training.data.idx import DataError
from training.export.onnx_export import ExportError
from training.export.parity import ParityError
from training.loop import TrainingDiverged
from training.tasks import TASKS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train a model, export it to ONNX with a parity check and publish it as "
                    "a new version in a model repository.")
    sub = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, module in TASKS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (DataError, ExportError, ParityError, TrainingDiverged) as e:
        # expected failures: a clear one-line reason, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing was published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
