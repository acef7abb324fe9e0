"""The IDX format of the MNIST files (http://yann.lecun.com/exdb/mnist/).

Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per
dimension; the data follows in C order, big-endian. Files may be gzipped; that is detected from
the gzip magic bytes, not from the file name, because downloads are often renamed or
decompressed by browsers without the name changing.
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
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}


class DataError(ValueError):
    """A data file or folder that cannot be used; the message names the file."""


def read_idx(path: Path | str) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a native-endian numpy array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: damaged or truncated gzip stream ({e})") from e
    if len(raw) < 4:
        raise DataError(f"{path}: truncated: {len(raw)} bytes is shorter than the IDX magic")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: wrong magic number 0x{raw[:4].hex()}: not an IDX file")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: truncated: the header of {ndim} dimensions is incomplete")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual < expected:
        raise DataError(f"{path}: truncated: header promises shape {shape} ({expected} bytes) "
                        f"but only {actual} bytes follow")
    if actual > expected:
        # trailing bytes mean the header and the data disagree: likely a wrong or spliced file
        raise DataError(f"{path}: {actual - expected} unexpected bytes after the data "
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
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    payload = header + body
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same array, same bytes
    path.write_bytes(payload)
    return path


def find_idx_file(folder: Path, stem: str) -> Path:
    """The file for e.g. stem 'train-images-idx3-ubyte', with or without .gz."""
    # The dotted spelling ('train-images.idx3-ubyte') is how some mirrors ship the same files.
    dotted = stem.replace("-idx", ".idx")
    candidates = [stem, stem + ".gz", dotted, dotted + ".gz"]
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / stem}: file not found (looked for {', '.join(candidates)})")


def read_image_label_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 of one split ('train' or 't10k')."""
    images_path = find_idx_file(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = find_idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images of shape (N, H, W), "
                        f"found {images.dtype} {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{labels_path}: expected integer labels of shape (N,), "
                        f"found {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{labels_path}: label {int(labels.min())} is out of range (negative)")
    return images, labels.astype(np.int64)
