"""The IDX format of MNIST and its relatives (gzipped or not), read and written with numpy.

Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
dimension; the data follows in row-major order. Lives in serving so that the client and the
trainer share one reader.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
TYPE_CODES = {v.newbyteorder("="): k for k, v in IDX_TYPES.items()}


class IdxError(ValueError):
    """A file that is not a valid IDX file; the message names the file and the problem."""


def read_idx(path: Path | str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise IdxError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IdxError(f"{path}: corrupt or truncated gzip data ({e})") from e
    if len(raw) < 4:
        raise IdxError(f"{path}: too short to hold an IDX header")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in IDX_TYPES or ndim == 0:
        raise IdxError(f"{path}: bad magic number 0x{raw[:4].hex()} (not an IDX file)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[type_code]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header < expected:
        raise IdxError(f"{path}: truncated: shape {list(shape)} needs {expected} bytes of data, "
                       f"file has {len(raw) - header}")
    data = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path | str, array: np.ndarray) -> None:
    """Write an array as IDX; gzipped when the name ends in .gz."""
    path = Path(path)
    array = np.asarray(array)
    code = TYPE_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise IdxError(f"{path}: IDX cannot hold dtype {array.dtype}")
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    data = header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
