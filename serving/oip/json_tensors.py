"""The Open Inference Protocol's REST tensors <-> numpy: JSON `data` (flat or nested, BYTES as
strings) and the binary tensor data extension (a JSON header of
`Inference-Header-Content-Length` bytes, then each binary tensor's bytes in order)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.errors import InvalidInput
from serving.oip.tensors import NUMPY_OF, datatype_of, decode_bytes_tensor, encode_bytes_tensor
from serving.preprocess.tensors import element_count

BINARY_HEADER = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class JsonInput:
    """One input of a REST request, as sent: its header, and its data or binary size."""

    name: str
    datatype: str
    shape: list[int]
    data: Any  # the JSON `data`, or None when the tensor is binary
    binary_size: int | None


def json_object(data: bytes) -> dict[str, Any]:
    """A request's JSON text, which must be one object."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInput(f"the request is not valid JSON: {e}") from e
    if not isinstance(parsed, dict):
        raise InvalidInput("the request must be a JSON object")
    return parsed


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """A request body -> its JSON object and the binary part after it."""
    view = memoryview(body)
    if header_length is None:
        head, binary = view, view[len(view):]
    else:
        if not (header_length.isascii() and header_length.isdigit()) or \
                int(header_length) > len(body):
            raise InvalidInput(f"{BINARY_HEADER} must be a byte count within the body "
                               f"({len(body)} bytes)")
        head, binary = view[:int(header_length)], view[int(header_length):]
    return json_object(bytes(head)), binary


def parse_inputs(request: dict[str, Any]) -> list[JsonInput]:
    """The `inputs` list, each entry's fields checked for type (not yet against a model)."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("'inputs' must be a non-empty list")
    parsed = []
    for i, entry in enumerate(inputs):
        if not isinstance(entry, dict):
            raise InvalidInput(f"inputs[{i}] must be an object")
        name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InvalidInput(f"inputs[{i}] needs a string 'name' and 'datatype'")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidInput(f"input {name[:100]!r}: 'shape' must be a list of integers")
        parameters = entry.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInput(f"input {name[:100]!r}: 'parameters' must be an object")
        size = parameters.get("binary_data_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)
                                 or size < 0):
            raise InvalidInput(f"input {name[:100]!r}: binary_data_size must be a byte count")
        if (size is None) == ("data" not in entry):
            raise InvalidInput(f"input {name[:100]!r}: send either 'data' or "
                               "parameters.binary_data_size")
        parsed.append(JsonInput(name, datatype, shape, entry.get("data"), size))
    return parsed


def decode_inputs(inputs: list[JsonInput], binary: memoryview) -> dict[str, np.ndarray]:
    """Each input's elements, from its JSON data or its slice of the binary part."""
    arrays, offset = {}, 0
    for tensor in inputs:
        what = f"input {tensor.name!r}"
        count = element_count(tensor.shape, what)
        dtype = NUMPY_OF[tensor.datatype]
        if tensor.binary_size is not None:
            chunk = binary[offset:offset + tensor.binary_size]
            if len(chunk) != tensor.binary_size:
                raise InvalidInput(f"{what}: binary_data_size runs past the body")
            offset += tensor.binary_size
            arrays[tensor.name] = _from_binary(bytes(chunk), tensor, dtype, count, what)
        else:
            arrays[tensor.name] = _from_json(tensor.data, tensor, dtype, count, what)
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data belong to no input")
    return arrays


def _from_binary(data: bytes, tensor: JsonInput, dtype: np.dtype, count: int,
                 what: str) -> np.ndarray:
    if tensor.datatype == "BYTES":
        return decode_bytes_tensor(data, count, what).reshape(tensor.shape)
    if len(data) != count * dtype.itemsize:
        raise InvalidInput(f"{what}: shape {tensor.shape} of {tensor.datatype} needs "
                           f"{count * dtype.itemsize} bytes, binary_data_size is {len(data)}")
    return np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(tensor.shape)


def _from_json(data: Any, tensor: JsonInput, dtype: np.dtype, count: int,
               what: str) -> np.ndarray:
    try:
        if tensor.datatype == "BYTES":
            flat = np.asarray(data if isinstance(data, list) else [data], dtype=object)
            flat = flat.reshape(-1)
            if not all(isinstance(x, str) for x in flat):
                raise InvalidInput(f"{what}: BYTES data must be strings")
            array = np.empty(len(flat), dtype=object)
            array[:] = [x.encode("utf-8") for x in flat]
        else:
            array = _numbers(np.asarray(data), tensor.datatype, dtype, what)
    except (ValueError, OverflowError, TypeError) as e:
        raise InvalidInput(f"{what}: data does not make a {tensor.datatype} tensor: "
                           f"{e}") from e
    if array.size != count:
        raise InvalidInput(f"{what}: shape {tensor.shape} needs {count} values, data has "
                           f"{array.size}")
    return array.reshape(tensor.shape)


def _numbers(values: np.ndarray, datatype: str, dtype: np.dtype, what: str) -> np.ndarray:
    """JSON numbers (nested lists parsed by numpy) as the datatype, refusing strings, bools
    for numbers, fractions for integers and values out of range."""
    if datatype == "BOOL":
        if values.dtype.kind != "b":
            raise InvalidInput(f"{what}: BOOL data must be true or false")
        return values
    if values.dtype.kind not in "iuf" or (dtype.kind in "iu" and values.dtype.kind == "f"):
        kind = "integers" if dtype.kind in "iu" else "numbers"
        raise InvalidInput(f"{what}: {datatype} data must be {kind}")
    array = values.astype(dtype)
    if dtype.kind in "iu" and not np.array_equal(array, values):
        raise InvalidInput(f"{what}: a value does not fit {datatype}")
    return array


def encode_output(name: str, array: np.ndarray, binary: bool) -> tuple[dict[str, Any],
                                                                       bytes | None]:
    """One output as its JSON entry, with its bytes apart when sent as binary data."""
    datatype = datatype_of(array)
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if binary:
        raw = encode_bytes_tensor(array) if datatype == "BYTES" else np.ascontiguousarray(
            array, dtype=array.dtype.newbyteorder("<")).tobytes()
        entry["parameters"] = {"binary_data_size": len(raw)}
        return entry, raw
    if datatype == "BYTES":
        entry["data"] = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                         for x in array.reshape(-1)]
    else:
        entry["data"] = array.reshape(-1).tolist()
    return entry, None
