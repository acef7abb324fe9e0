"""A python-backend model of the Triton form of a smallserve repository.

`python -m serving.triton export` copies this file into every version folder of the Triton
form; Triton's python backend loads it. The work is serving.triton.backend's, imported from
the installed serving package, or from the folder the config's `smallserve_path` parameter
names (put first on sys.path), so an export runs whatever serving package the server has.
"""

import json
import sys

# provided by Triton's python backend (the stub process), not a pip package
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})
        path = parameters.get("smallserve_path", {}).get("string_value", "")
        if path and path not in sys.path:
            sys.path.insert(0, path)
        from serving.triton.backend import TritonModel

        self.model = TritonModel.from_triton_args(args, pb_utils)

    def execute(self, requests: list) -> list:
        return self.model.execute(requests)
