"""Request texts: UTF-8 bytes -> str, with the per-text size limit."""

from __future__ import annotations

from collections.abc import Iterable

from serving.errors import InvalidInput
from serving.preprocess.limits import input_limits


def decode_texts(items: Iterable[bytes]) -> list[str]:
    limit = input_limits().max_text_bytes
    texts = []
    for i, raw in enumerate(items):
        raw = bytes(raw)
        if len(raw) > limit:
            raise InvalidInput(f"text {i} is {len(raw)} bytes; this server takes at most "
                               f"{limit} (--max-text-bytes)")
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InvalidInput(f"text {i} is not valid UTF-8: {e}") from e
    return texts
