"""Turn request images into the pixel tensor a model's manifest describes."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from serving.errors import InvalidInput
from serving.preprocess.limits import input_limits

MODES = {"grayscale": "L", "rgb": "RGB"}
# Pillow would also open dozens of rarer formats, some through external programs (EPS runs
# Ghostscript); requests get the common photo and screenshot formats only.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")


def image_geometry(preprocessing: dict[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) the model expects."""
    try:
        return (int(preprocessing["channels"]), int(preprocessing["height"]),
                int(preprocessing["width"]))
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInput("this model's manifest does not describe image input") from e


def decode_images(encoded: list[bytes], preprocessing: dict[str, Any]) -> np.ndarray:
    """Encoded PNG/JPEG/... images -> float32 [N, C, H, W] of raw 0..255 values."""
    channels, height, width = image_geometry(preprocessing)
    mode = MODES.get(str(preprocessing.get("color", "grayscale")), "L")
    batch = np.empty((len(encoded), channels, height, width), dtype=np.float32)
    for i, data in enumerate(encoded):
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
                img = img.convert(mode)
                if img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.BILINEAR)
                return np.asarray(img, dtype=np.float32)
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InvalidInput(f"image {index} could not be decoded: {e}") from e
