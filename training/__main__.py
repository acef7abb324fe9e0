"""python -m training <task> [--config FILE.yaml] [options]; `python -m training <task> --help`
lists the options, one per config key.

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
from training.pipeline import run
from training.run_config import add_flags, resolve
from training.tasks import TASKS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train a model, export it to ONNX with a parity check and publish it as "
                    "a new version in a model repository. A run is its preset "
                    "(training/configs/), then --config FILE, then the flags given.")
    sub = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, task in TASKS.items():
        module = sys.modules[task.__module__]
        p = sub.add_parser(name, help=task.help, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_flags(p, task.schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    task = TASKS[args.pop("task")]
    config_file = args.pop("config")
    try:
        config = resolve(task.schema, task.name, task.preset, config_file, args)
        with process_group(config.device) as world, contextlib.ExitStack() as quiet:
            if not world.is_main:
                # every rank runs the same task: one copy of its report is enough (stderr,
                # where errors go, stays open on every rank)
                devnull = quiet.enter_context(open(os.devnull, "w"))  # noqa: SIM115
                quiet.enter_context(contextlib.redirect_stdout(devnull))
            return run(task, config)
    except InputError as e:
        # bad data, options or config, found before training: exit 2, as argparse exits
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
