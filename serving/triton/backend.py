"""What a python-backend model of the Triton form runs: this server's runner behind Triton's
execute().

Triton's dynamic batcher hands execute() the requests that queued while the model was busy.
Each is checked alone by the runner (a bad request fails alone, as in this server), then the
requests whose batch signatures agree run as one merged run of the runner's batch strategy, and
each gets its own outputs: the same check, merge and decoding code this server runs, so Triton
answers with the same tensors.

Triton's python backend module (triton_python_backend_utils) exists only inside Triton's stub
process; it is handed in, so this module imports without Triton and tests can fake it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import numpy as np

from serving.errors import ServingError
from serving.runners import load_runner
from serving.runners.base import Parameters, Tensors
from serving.runtime.session import SessionConfig

log = logging.getLogger(__name__)

VERSION_FOLDER = "smallserve"  # <model>/<version>/smallserve: our version folder, verbatim
THREADS_PARAMETER = "intra_op_threads"  # config.pbtxt parameter: onnxruntime's threads
# Triton's error codes for the statuses this server's errors carry; a request over the cost
# budget is the caller's to change, like any other bad argument
TRITON_CODES = {grpc.StatusCode.INVALID_ARGUMENT: "INVALID_ARG",
                grpc.StatusCode.RESOURCE_EXHAUSTED: "INVALID_ARG",
                grpc.StatusCode.NOT_FOUND: "NOT_FOUND",
                grpc.StatusCode.UNAVAILABLE: "UNAVAILABLE",
                grpc.StatusCode.CANCELLED: "CANCELLED"}


class TritonModel:
    def __init__(self, version_dir: Path, pb_utils: ModuleType,
                 config: SessionConfig | None = None) -> None:
        self.pb = pb_utils
        self.runner = load_runner(version_dir, config or SessionConfig())
        self.strategy = self.runner.batch_strategy()
        self.output_names = [t.name for t in self.runner.output_specs]

    @classmethod
    def from_triton_args(cls, args: dict[str, str], pb_utils: ModuleType) -> TritonModel:
        """The model Triton's initialize(args) names: its folder, version and parameters."""
        version_dir = Path(args["model_repository"]) / args["model_version"] / VERSION_FOLDER
        parameters = json.loads(args["model_config"]).get("parameters", {})
        threads = parameters.get(THREADS_PARAMETER, {}).get("string_value", "0")
        return cls(version_dir, pb_utils, SessionConfig(intra_op_threads=int(threads)))

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order; an error response for a request that fails,
        never an exception (which would fail every request of the batch)."""
        responses: list[Any] = [None] * len(requests)
        groups: dict[Hashable, list[tuple[int, Any]]] = {}
        for i, request in enumerate(requests):
            try:
                payload = self.runner.check(self.inputs(request), self.parameters(request))
                groups.setdefault(self.strategy.signature(payload), []).append((i, payload))
            except Exception as e:
                responses[i] = self.error(e)
        for members in groups.values():
            try:
                results = self.strategy.run([payload for _, payload in members])
            except Exception as e:
                for i, _ in members:
                    responses[i] = self.error(e)
                continue
            for (i, _), result in zip(members, results, strict=True):
                responses[i] = self.response(requests[i], result)
        return responses

    def inputs(self, request: Any) -> Tensors:
        return {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}

    def parameters(self, request: Any) -> Parameters:
        """The request's parameters (beam_size, max_length), as this server reads them."""
        text = request.parameters()
        parameters = json.loads(text) if text else {}
        return {k: v for k, v in parameters.items() if v is not None}

    def response(self, request: Any, result: Any) -> Any:
        asked = set(request.requested_output_names())
        names = [n for n in self.output_names if not asked or n in asked]
        try:
            tensors = self.runner.outputs(result, names)
        except Exception as e:
            return self.error(e)
        return self.pb.InferenceResponse(output_tensors=[
            self.pb.Tensor(name, np.ascontiguousarray(tensors[name])) for name in names])

    def error(self, error: Exception) -> Any:
        if isinstance(error, ServingError):
            code = TRITON_CODES.get(error.code, "INTERNAL")
        else:
            log.exception("model %s failed", self.runner.name, exc_info=error)
            code = "INTERNAL"
        triton_error = self.pb.TritonError
        return self.pb.InferenceResponse(
            error=triton_error(str(error), getattr(triton_error, code, triton_error.INTERNAL)))
