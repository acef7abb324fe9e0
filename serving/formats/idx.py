"""The IDX format of MNIST and its relatives (gzipped or not), read and written with numpy.

Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
dimension; the data follows in C order, big-endian. Gzip is detected from the magic bytes, not
from the name, because downloads are often renamed or decompressed without the name changing.
The client and the trainer share this one reader.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
# type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}


class IdxError(ValueError):
    """A file that is not a valid IDX file; the message names the file and the problem."""


def read_idx(path: Path | str) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a native-endian numpy array."""
    path = Path(path)
    if not path.is_file():
        raise IdxError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise IdxError(f"{path}: damaged or truncated gzip stream ({e})") from e
    if len(raw) < 4:
        raise IdxError(f"{path}: truncated: {len(raw)} bytes is shorter than the IDX magic")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        raise IdxError(f"{path}: wrong magic number 0x{raw[:4].hex()}: not an IDX file")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IdxError(f"{path}: truncated: the header of {ndim} dimensions is incomplete")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual < expected:
        raise IdxError(f"{path}: truncated: header promises shape {shape} ({expected} bytes) "
                       f"but only {actual} bytes follow")
    if actual > expected:
        # trailing bytes mean the header and the data disagree: likely a wrong or spliced file
        raise IdxError(f"{path}: {actual - expected} unexpected bytes after the data "
                       f"of shape {shape}")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path | str, array: np.ndarray) -> Path:
    """Write an array as IDX; gzipped when the name ends in .gz."""
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError("IDX needs between 1 and 255 dimensions")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                       *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same array, same bytes
    path.write_bytes(payload)
    return path
