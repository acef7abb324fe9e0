"""Length-prefixed BYTES elements of the Open Inference Protocol, decoded as far as the shape."""

import struct

import numpy as np
import pytest

from serving.errors import InvalidInput
from serving.oip.tensors import decode_bytes_tensor, encode_bytes_tensor


def test_round_trip_keeps_empty_and_binary_elements():
    items = np.array([b"", b"\x00\xff", "é".encode(), b"x" * 70000], dtype=object)
    decoded = decode_bytes_tensor(encode_bytes_tensor(items), 4, "t")
    assert list(decoded) == list(items)


def test_more_elements_than_the_shape_are_refused_without_reading_them():
    flood = struct.pack("<I", 0) * 4_000_000  # 4 M empty elements behind a shape of 1
    with pytest.raises(InvalidInput, match=r"needs 1 BYTES elements; 15999996 bytes"):
        decode_bytes_tensor(flood, 1, "t")


@pytest.mark.parametrize("raw, count, words", [
    (struct.pack("<I", 1) + b"a", 2, "needs 2 BYTES elements, got 1"),
    (struct.pack("<I", 1) + b"a" + b"\x01\x00", 2, "ends inside a length prefix"),
    (struct.pack("<I", 9) + b"abc", 1, "element of 9 bytes runs past the data"),
    (b"", 1, "got 0"),
])
def test_short_or_lying_data_is_invalid(raw, count, words):
    with pytest.raises(InvalidInput, match=words):
        decode_bytes_tensor(raw, count, "t")


def test_no_elements_for_an_empty_shape():
    assert decode_bytes_tensor(b"", 0, "t").shape == (0,)
