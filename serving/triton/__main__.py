"""python -m serving.triton export --repository exported --out triton-repo [--form onnx|python]
python -m serving.triton wheel-env [--path DIR]

export writes the Triton form of a model repository (serving.triton) and prints one JSON line
per model exported; a model that could not be exported is named on stderr and the exit status
is 1. wheel-env creates the environment in which the nvidia-pytriton wheel's tritonserver runs
here (serving.triton.wheel; the tests and the benchmark use it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from serving.triton import wheel
from serving.triton.export import FORMS, PythonModelOptions, export_repository


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.triton", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write the Triton form of a repository")
    export.add_argument("--repository", type=Path, default=Path("exported"),
                        help="this server's model repository (default: exported)")
    export.add_argument("--out", type=Path, required=True,
                        help="the Triton model repository to write (models in it are replaced)")
    export.add_argument("--form", choices=FORMS, default="onnx",
                        help="classifiers and taggers: Triton's onnxruntime platform (onnx, the "
                        "default) or a python-backend model running this server's runner "
                        "(python); sequence models are always python-backend models")
    export.add_argument("--model", action="append", dest="names", metavar="NAME",
                        help="export only this model (repeatable; default: every model)")
    export.add_argument("--smallserve-path", default="", metavar="DIR",
                        help="a folder holding the serving package, put on the python "
                        "backend's sys.path (default: none, the package is installed)")
    export.add_argument("--execution-env", default="", metavar="TARGZ",
                        help="a conda-pack'd environment with the serving requirements and "
                        "package, for Triton images without them (Triton's EXECUTION_ENV_PATH; "
                        "$$TRITON_MODEL_DIRECTORY names the model folder)")
    export.add_argument("--instances", type=int, default=1,
                        help="Triton model instances per python-backend model (default: 1)")
    export.add_argument("--intra-op-threads", type=int, default=0,
                        help="onnxruntime threads per operator in a python-backend model "
                        "instance (default: 0, one per core)")
    env = commands.add_parser("wheel-env", help="create the environment of the nvidia-pytriton "
                              "wheel's tritonserver (downloads the wheel)")
    env.add_argument("--path", type=Path, default=None,
                     help=f"where (default: $SMALLSERVE_TRITON_ENV or {wheel.env_dir()})")
    args = parser.parse_args(argv)
    if args.command == "wheel-env":
        print(wheel.create_env(args.path).binary)
        return 0
    if not args.repository.is_dir():
        parser.error(f"--repository {args.repository}: not a folder")
    if args.instances < 1 or args.intra_op_threads < 0:
        parser.error("--instances must be at least 1 and --intra-op-threads at least 0")
    options = PythonModelOptions(
        str(Path(args.smallserve_path).resolve()) if args.smallserve_path else "",
        args.instances, args.intra_op_threads, args.execution_env)
    exported, failures = export_repository(args.repository, args.out, args.form,
                                           names=args.names, options=options)
    for model in exported:
        print(json.dumps(asdict(model)), flush=True)
    for name, reason in failures.items():
        print(f"{name}: not exported: {reason}", file=sys.stderr)
    if not exported and not failures:
        print(f"{args.repository} holds no model", file=sys.stderr)
    return 1 if failures or not exported else 0


if __name__ == "__main__":
    raise SystemExit(main())
