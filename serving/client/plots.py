"""Attention pictures drawn with Pillow alone (no plotting library in the serving image)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = 28
# Pillow's built-in font draws ASCII only: SentencePiece's word marker and accented letters
# ("▁niño") would come out as empty boxes. DejaVu Sans covers them and is on most Linux machines;
# without it labels are folded to ASCII.
UNICODE_FONT, FONT_SIZE = "DejaVuSans.ttf", 11
WORD_MARKER = "\u2581"


@lru_cache(maxsize=1)
def label_font() -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, bool]:
    """(the font labels are drawn in, whether it covers more than ASCII)."""
    try:
        return ImageFont.truetype(UNICODE_FONT, FONT_SIZE), True
    except OSError:
        return ImageFont.load_default(), False


def label_text(text: str, unicode_font: bool) -> str:
    """text as the label font can draw it: unchanged in a Unicode font; otherwise the word
    marker as "_", accents dropped (niño -> nino) and anything else non-ASCII as "?"."""
    if unicode_font:
        return text
    folded = unicodedata.normalize("NFKD", text.replace(WORD_MARKER, "_"))
    return "".join(c for c in folded if not unicodedata.combining(c)).encode(
        "ascii", "replace").decode("ascii")


def attention_heatmap(attention: np.ndarray, rows: list[str], columns: list[str],
                      path: Path) -> Path:
    """A [rows, columns] attention matrix as a grey heatmap (black = 1, white = 0) with labels:
    target pieces down the left, source pieces along the top."""
    attention = np.asarray(attention, dtype=np.float32)
    font, unicode_font = label_font()
    rows = [label_text(r, unicode_font) for r in rows]
    columns = [label_text(c, unicode_font) for c in columns]
    left = 12 + max((int(font.getlength(r)) for r in rows), default=0)
    top = 12 + max((int(font.getlength(c)) for c in columns), default=0)
    image = Image.new("RGB", (left + CELL * len(columns) + 8, top + CELL * len(rows) + 8),
                      "white")
    draw = ImageDraw.Draw(image)
    for i, label in enumerate(rows):
        draw.text((4, top + i * CELL + CELL // 3), label, fill="black", font=font)
    for j, label in enumerate(columns):
        # column labels written vertically so long pieces do not overlap
        text = Image.new("RGB", (int(font.getlength(label)) + 4, 14), "white")
        ImageDraw.Draw(text).text((2, 1), label, fill="black", font=font)
        image.paste(text.rotate(90, expand=True), (left + j * CELL + CELL // 3, 4))
    for i in range(len(rows)):
        for j in range(len(columns)):
            shade = int(255 * (1 - float(np.clip(attention[i, j], 0, 1))))
            x, y = left + j * CELL, top + i * CELL
            draw.rectangle([x, y, x + CELL - 1, y + CELL - 1], fill=(shade, shade, shade),
                           outline=(200, 200, 200))
    path = Path(path)
    image.save(path)
    return path


def attention_overlay(image: Image.Image, maps: np.ndarray, words: list[str],
                      path: Path, size: int = 160) -> Path:
    """One panel per word: the image with that word's attention map [rows, cols] laid over it
    in red, the word underneath."""
    font, unicode_font = label_font()
    words = [label_text(w, unicode_font) for w in words]
    base = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    strip = Image.new("RGB", (max(1, len(words)) * (size + 8), size + 24), "white")
    for i, (word, grid) in enumerate(zip(words, np.asarray(maps, np.float32), strict=True)):
        peak = float(grid.max()) or 1.0
        heat = Image.fromarray(np.uint8(255 * grid / peak)).resize((size, size),
                                                                    Image.Resampling.BILINEAR)
        red = Image.new("RGB", (size, size), (255, 0, 0))
        panel = Image.composite(red, base, heat.point(lambda v: int(v * 0.6)))
        strip.paste(panel, (i * (size + 8), 0))
        ImageDraw.Draw(strip).text((i * (size + 8) + 4, size + 6), word, fill="black",
                                   font=font)
    path = Path(path)
    strip.save(path)
    return path
