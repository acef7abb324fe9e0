"""Turn request images into the pixel tensor a model's manifest describes.

image_pixels is also how training decodes its image folders (training imports it; serving
never imports training), so a model is served the pixels it was trained on.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from serving.errors import InvalidInput, TooLarge
from serving.execution import stop_if_abandoned
from serving.preprocess.limits import input_limits

MODES = {"grayscale": "L", "rgb": "RGB"}
# Pillow would also open dozens of rarer formats, some through external programs (EPS runs
# Ghostscript); requests get the common photo and screenshot formats only.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
# Pillow's modes of one channel wider than 8 bits: 16-bit PNGs open as I;16 (I in older Pillow)
WIDE_INTEGER_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
SIXTEEN_BIT_MAX = 65535


def image_geometry(preprocessing: dict[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) the model expects."""
    try:
        return (int(preprocessing["channels"]), int(preprocessing["height"]),
                int(preprocessing["width"]))
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInput("this model's manifest does not describe image input") from e


def header_pixels(encoded: list[bytes]) -> int:
    """Width x height of every image summed, from their headers (nothing is decoded)."""
    total = 0
    for i, data in enumerate(encoded):
        if not data:
            raise InvalidInput(f"image {i} is empty")
        try:
            with Image.open(io.BytesIO(data), formats=FORMATS) as img:
                total += img.width * img.height
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
                Image.DecompressionBombError) as e:
            raise InvalidInput(f"image {i} could not be decoded: {e}") from e
    return total


def check_call_pixels(encoded: list[bytes]) -> int:
    """The pixels one call would decode against --max-call-pixels, before decoding any."""
    total = header_pixels(encoded)
    limit = input_limits().max_call_pixels
    if total > limit:
        raise TooLarge(f"the call's {len(encoded)} images hold {total} pixels; this server "
                       f"decodes at most {limit} per call (--max-call-pixels)")
    return total


def decode_images(encoded: list[bytes], preprocessing: dict[str, Any]) -> np.ndarray:
    """Encoded PNG/JPEG/... images -> float32 [N, C, H, W] of raw 0..255 values, checked
    against the call's pixel budget first."""
    check_call_pixels(encoded)
    channels, height, width = image_geometry(preprocessing)
    mode = MODES.get(str(preprocessing.get("color", "grayscale")), "L")
    batch = np.empty((len(encoded), channels, height, width), dtype=np.float32)
    for i, data in enumerate(encoded):
        stop_if_abandoned()
        batch[i] = _decode_one(data, i, mode, height, width).reshape(height, width, channels) \
            .transpose(2, 0, 1)
    return batch


def _decode_one(data: bytes, index: int, mode: str, height: int, width: int) -> np.ndarray:
    if not data:
        raise InvalidInput(f"image {index} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as img:
                limit = input_limits().max_image_pixels
                if img.width * img.height > limit:
                    raise InvalidInput(f"image {index} is {img.width}x{img.height}, "
                                       f"larger than {limit} pixels (--max-image-pixels)")
                return image_pixels(img, mode, height, width).astype(np.float32)
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InvalidInput(f"image {index} could not be decoded: {e}") from e


def image_pixels(img: Image.Image, mode: str, height: int, width: int) -> np.ndarray:
    """An opened image as uint8 pixels (height, width[, channels]) in Pillow mode `mode`.

    EXIF orientation is applied first, so a phone photo stored sideways is seen upright, as
    every viewer shows it. Wider-than-8-bit grey images are scaled to 8 bits: Pillow's own
    conversion clips them, which turns most of a 16-bit photo white. Then the image is
    converted to `mode` and resized bilinearly.
    """
    img = ImageOps.exif_transpose(img)
    img = _eight_bit(img).convert(mode)
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _eight_bit(img: Image.Image) -> Image.Image:
    """Grey levels of up to 16 bits scaled to 0..255; other images as they are."""
    if img.mode not in WIDE_INTEGER_MODES:
        return img
    wide = np.asarray(img).astype(np.float64)
    scaled = np.rint(np.clip(wide, 0, SIXTEEN_BIT_MAX) * (255 / SIXTEEN_BIT_MAX))
    return Image.fromarray(scaled.astype(np.uint8), "L")
