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
    # The cost of one call, estimated from its request before any work: over a budget it is
    # RESOURCE_EXHAUSTED at once. Defaults fit a 2-core, 24 GiB machine serving a few calls
    # at a time; each is a flag.
    max_call_pixels: int = 50_000_000  # decoded image pixels per call (headers summed)
    max_call_elements: int = 64 * 1024 * 1024  # tensor elements per call
    # decoder steps times rows: texts/images x beam x maximum length per call
    max_decode_steps: int = 2_000_000
    # what a search holds: rows (texts x beam) x source length x memory width, float32
    max_search_memory_bytes: int = 1024 * 1024 * 1024
    # an answer larger than the message limit is refused before it is computed
    max_response_bytes: int = 16 * 1024 * 1024


_current = InputLimits()


def input_limits() -> InputLimits:
    return _current


def set_input_limits(limits: InputLimits) -> None:
    global _current
    _current = limits
