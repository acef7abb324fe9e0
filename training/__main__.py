"""python -m training <task> [options]; `python -m training <task> --help` lists the options.

Under `torchrun --nproc_per_node=N -m training <task> [options]` the task trains data-parallel
(training.distributed); the options and the published result are the same.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from training.distributed import process_group
from training.errors import InputError
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
        with process_group(args.device) as world, contextlib.ExitStack() as quiet:
            if not world.is_main:
                # every rank runs the same task: one copy of its report is enough (stderr,
                # where errors go, stays open on every rank)
                devnull = quiet.enter_context(open(os.devnull, "w"))  # noqa: SIM115
                quiet.enter_context(contextlib.redirect_stdout(devnull))
            return int(args.run(args) or 0)
    except InputError as e:
        # bad data or options, found before training: exit 2, as argparse exits for its own
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ExportError, ParityError, TrainingDiverged) as e:
        # expected failures: a clear one-line reason, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing was published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
