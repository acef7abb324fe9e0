"""OIP tensors <-> numpy: raw little-endian bytes, typed contents, length-prefixed BYTES."""

from __future__ import annotations

import struct
import sys
from typing import Any

import numpy as np

from serving.api.generated.inference import grpc_service_pb2 as pb
from serving.errors import InvalidInput
from serving.preprocess.tensors import element_count, little_endian

LITTLE_ENDIAN = sys.byteorder == "little"
NUMPY_OF = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
DATATYPE_OF_MANIFEST = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8",
                        "int32": "INT32", "int64": "INT64", "bool": "BOOL", "bytes": "BYTES"}
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def decode_bytes_tensor(raw: bytes, count: int, what: str) -> np.ndarray:
    """4-byte little-endian length-prefixed elements -> object array of bytes.

    Reads at most the count elements the shape names (already bounded by the header checks),
    never every element the data holds: 16 M empty elements behind a shape of 1 are refused
    after one element, not after a 10 s walk on the event loop."""
    array = np.empty(count, dtype=object)
    offset, size = 0, len(raw)
    for i in range(count):
        if offset + 4 > size:
            if offset == size:
                raise InvalidInput(f"{what}: shape needs {count} BYTES elements, got {i}")
            raise InvalidInput(f"{what}: BYTES data ends inside a length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > size:
            raise InvalidInput(f"{what}: BYTES element of {length} bytes runs past the data")
        array[i] = raw[offset:offset + length]
        offset += length
    if offset != size:
        raise InvalidInput(f"{what}: shape needs {count} BYTES elements; {size - offset} bytes "
                           "of data follow them")
    return array


def encode_bytes_tensor(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts += [struct.pack("<I", len(data)), data]
    return b"".join(parts)


def decode_input(tensor: Any, raw: bytes | None) -> np.ndarray:
    """One request input (its raw_input_contents entry, or its typed contents) -> array."""
    what = f"input {tensor.name!r}"
    dtype = NUMPY_OF.get(tensor.datatype)
    if dtype is None:
        raise InvalidInput(f"{what}: unknown datatype {tensor.datatype!r}")
    shape = list(tensor.shape)
    count = element_count(shape, what)
    if raw is not None:
        if tensor.datatype == "BYTES":
            return decode_bytes_tensor(raw, count, what).reshape(shape)
        expected = count * dtype.itemsize
        if len(raw) != expected:
            raise InvalidInput(f"{what}: shape {shape} of {tensor.datatype} needs {expected} "
                               f"bytes, raw_input_contents has {len(raw)}")
        # a read-only view of the request's bytes where the machine is little-endian (no copy:
        # runners convert what they take), a native copy elsewhere
        return np.frombuffer(raw, dtype=little_endian(dtype)).reshape(shape) \
            .astype(dtype, copy=False)
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise InvalidInput(f"{what}: {tensor.datatype} must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(f"{what}: shape {shape} needs {count} values, "
                           f"contents.{field} has {len(values)}")
    if tensor.datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    try:
        return np.array(values, dtype=dtype).reshape(shape)
    except OverflowError as e:
        raise InvalidInput(f"{what}: a value does not fit {tensor.datatype}") from e


CONTENTS_FIELDS = tuple(sorted(set(CONTENTS_FIELD.values())))
# numpy dtype -> OIP datatype, either byte order (raw contents are little-endian either way)
DATATYPE_OF_NUMPY = {**{d.newbyteorder("<"): n for n, d in NUMPY_OF.items()},
                     **{d.newbyteorder(">"): n for n, d in NUMPY_OF.items()}}


def has_typed_contents(tensor: Any) -> bool:
    return tensor.HasField("contents") and \
        any(len(getattr(tensor.contents, f)) for f in CONTENTS_FIELDS)


def datatype_of(array: np.ndarray) -> str:
    name = DATATYPE_OF_NUMPY.get(array.dtype)
    if name is not None:
        return name
    if array.dtype.kind in "SU":
        return "BYTES"
    raise ValueError(f"no OIP datatype for {array.dtype}")


def encode_output(name: str, array: np.ndarray) -> tuple[pb.ModelInferResponse.InferOutputTensor,
                                                         bytes]:
    datatype = datatype_of(array)
    tensor = pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype,
                                                     shape=list(array.shape))
    if datatype == "BYTES":
        return tensor, encode_bytes_tensor(array)
    if not (array.dtype.isnative and LITTLE_ENDIAN):
        array = array.astype(array.dtype.newbyteorder("<"))
    return tensor, array.tobytes()  # row-major, whatever the array's strides
