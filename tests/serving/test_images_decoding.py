"""Request images decode to the pixels a viewer shows: 16-bit scaled to 8 bits (not clipped),
EXIF orientation applied. Training decodes its image folders with the same function."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serving.preprocess.images import decode_images

EXIF_ORIENTATION = 0x0112


def encoded(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def preprocessing(color: str, height: int, width: int) -> dict[str, object]:
    return {"color": color, "channels": 3 if color == "rgb" else 1, "height": height,
            "width": width}


@pytest.mark.parametrize("color", ["grayscale", "rgb"])
def test_16_bit_png_is_scaled_to_8_bits_not_clipped(color: str) -> None:
    levels = np.linspace(0, 65535, 32 * 48).reshape(32, 48).astype(np.uint16)
    data = encoded(Image.fromarray(levels))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    pixels = decode_images([data], preprocessing(color, 32, 48))[0]
    expected = np.rint(levels * (255 / 65535))
    for channel in pixels:
        np.testing.assert_array_equal(channel, expected)
    assert (pixels == 255).mean() < 0.01  # Pillow's own conversion made 97% of them white


def test_8_bit_images_decode_as_before() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    pixels = decode_images([encoded(Image.fromarray(rgb))], preprocessing("rgb", 20, 30))[0]
    np.testing.assert_array_equal(pixels.transpose(1, 2, 0), rgb)


@pytest.mark.parametrize(("orientation", "transpose"), [
    (3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270),
    (8, Image.Transpose.ROTATE_90),
])
def test_exif_orientation_is_applied(orientation: int, transpose: Image.Transpose) -> None:
    stored = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6) * 10
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    upright = np.asarray(Image.fromarray(stored).transpose(transpose))
    data = encoded(Image.fromarray(stored), exif=exif)
    pixels = decode_images([data], preprocessing("grayscale", *upright.shape))[0, 0]
    np.testing.assert_array_equal(pixels, upright)
