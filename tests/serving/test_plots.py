"""Attention pictures: labels drawn as glyphs, not as empty boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from serving.client.plots import attention_heatmap, label_font, label_text


def test_labels_fold_to_ascii_only_without_a_unicode_font() -> None:
    assert label_text("\u2581niño", unicode_font=True) == "\u2581niño"
    assert label_text("\u2581niño", unicode_font=False) == "_nino"
    assert label_text("está\u2581", unicode_font=False) == "esta_"
    assert label_text("数", unicode_font=False) == "?"


def _drawn(text: str) -> np.ndarray:
    font, _ = label_font()
    image = Image.new("L", (40, 16), 0)
    ImageDraw.Draw(image).text((2, 1), text, fill=255, font=font)
    return np.asarray(image)


def test_every_label_character_has_a_glyph() -> None:
    font, unicode_font = label_font()
    missing = _drawn("\uffff")  # a noncharacter: the font's empty box
    for text in ("\u2581niño", "está", "the", "</s>"):
        for c in label_text(text, unicode_font):
            assert not np.array_equal(_drawn(c), missing), (text, c)


def test_heatmap_of_spanish_pieces(tmp_path: Path) -> None:
    path = attention_heatmap(np.eye(2), ["\u2581the", "\u2581boy"], ["\u2581el", "\u2581niño"],
                             tmp_path / "a.png")
    with Image.open(path) as image:
        assert image.width > 2 * 28 and image.height > 2 * 28


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_heatmap_is_black_for_attention_one_white_for_zero(tmp_path: Path,
                                                           value: float) -> None:
    path = attention_heatmap(np.full((1, 1), value), ["a"], ["b"], tmp_path / "a.png")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    # the one cell sits at the bottom right, inside its 1-pixel outline
    assert pixels[-8 - 14, -8 - 14] == (255 if value == 0.0 else 0)
