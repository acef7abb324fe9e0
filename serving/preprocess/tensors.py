"""Check request tensors against what a model declares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from serving.errors import InvalidInput, TooLarge
from serving.preprocess.limits import input_limits

# No dimension of a tensor that fits in a gRPC message comes near this; numpy refuses shapes
# whose size overflows even when another dimension is 0.
MAX_DIMENSION = 2**31 - 1
# the pixel contract of every image model, on every front end (serving.runners.image)
PIXEL_RANGE = "UINT8 values 0..255 (raw grey levels or RGB, not scaled to 0..1)"


def element_count(shape: list[int], what: str) -> int:
    """Elements of a request tensor's shape, refusing negative and absurd dimensions."""
    if shape and min(shape) < 0:
        raise InvalidInput(f"{what}: shape {shape} has a negative dimension")
    if shape and max(shape) > MAX_DIMENSION:
        raise InvalidInput(f"{what}: shape {shape} has a dimension above {MAX_DIMENSION}")
    return math.prod(shape)  # exact: np.prod wraps around in int64


def tensor_from_bytes(data: bytes, dtype: np.dtype, shape: list[int], what: str) -> np.ndarray:
    """Little-endian row-major bytes -> array, with the byte count checked against the shape."""
    expected = element_count(shape, what) * dtype.itemsize
    if len(data) != expected:
        raise InvalidInput(f"{what}: shape {shape} of {dtype.name} needs {expected} bytes, "
                           f"got {len(data)}")
    return np.frombuffer(data, dtype=little_endian(dtype)).reshape(shape)


@lru_cache(maxsize=64)
def little_endian(dtype: np.dtype) -> np.dtype:
    """dtype read as little-endian bytes (worked out once: building a dtype costs ~1 us)."""
    return dtype.newbyteorder("<")


def image_batch(array: np.ndarray, chw: tuple[int, int, int], what: str) -> np.ndarray:
    """[N, C, H, W] or, for one channel, [N, H, W] -> float32 [N, C, H, W] of finite values."""
    channels, height, width = chw
    if array.ndim == 3 and channels == 1:
        array = array[:, None]
    if array.ndim != 4 or tuple(array.shape[1:]) != chw:
        raise InvalidInput(f"{what}: shape {list(array.shape)} does not match the model's "
                           f"[N, {channels}, {height}, {width}]")
    if array.shape[0] == 0:
        raise InvalidInput(f"{what}: the batch is empty")
    whole = array.dtype.kind in "ui"  # integer pixels (the UINT8 contract) are finite
    array = array.astype(np.float32, copy=False)
    if not whole and not np.isfinite(array).all():
        raise InvalidInput(f"{what}: contains NaN or Inf")
    return array


def grey_levels(array: np.ndarray, what: str) -> np.ndarray:
    """UINT8 pixels as they are; FLOAT32 pixels only when every value is a whole grey level
    0..255, as UINT8. Fractions mean another scale (0..1, or normalised): refused, never
    guessed at."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind != "f":
        raise InvalidInput(f"{what}: pixels must be UINT8 (or FLOAT32 grey levels), got "
                           f"{array.dtype}")
    if not np.isfinite(array).all():
        raise InvalidInput(f"{what}: contains NaN or Inf")
    if (array != np.round(array)).any() or (array.size and (array.min() < 0
                                                             or array.max() > 255)):
        raise InvalidInput(f"{what}: FLOAT32 pixels must be whole grey levels 0..255 (raw, not "
                           "scaled to 0..1 or normalised); send UINT8 to be sure")
    return array.astype(np.uint8)


def check_call_elements(inputs: dict[str, np.ndarray]) -> None:
    """The tensor elements of one call against --max-call-elements (BYTES count elsewhere:
    as texts, or as the pixels of their images)."""
    total = sum(a.size for a in inputs.values() if a.dtype != object)
    limit = input_limits().max_call_elements
    if total > limit:
        raise TooLarge(f"the call carries {total} tensor elements; this server takes at most "
                       f"{limit} per call (--max-call-elements)")


def check_batch_size(n: int, limit: int) -> None:
    if n == 0:
        raise InvalidInput("the batch is empty")
    if limit and n > limit:
        raise TooLarge(f"batch of {n} exceeds this server's limit of {limit}")


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> right-padded int64 [B, S] and lengths [B]."""
    lengths = np.array([len(x) for x in ids], np.int64)
    batch = np.full((len(ids), int(lengths.max())), pad_id, np.int64)
    for row, x in zip(batch, ids, strict=True):
        row[:len(x)] = x
    return batch, lengths
