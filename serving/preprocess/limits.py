"""Limits on one request input, set once per server process from its flags.

They live here rather than on the service because the decoding they guard also runs inside
runners (the Open Inference Protocol hands encoded images and texts straight to a runner).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputLimits:
    # a few thousand pixels a side is far beyond any model here; a larger image is refused
    # from its header, before it is decoded, so a crafted file cannot exhaust memory
    max_image_pixels: int = 40_000_000
    # bytes of UTF-8 per text, checked before tokenising
    max_text_bytes: int = 4096


_current = InputLimits()


def input_limits() -> InputLimits:
    return _current


def set_input_limits(limits: InputLimits) -> None:
    global _current
    _current = limits
