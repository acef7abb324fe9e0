"""A small bring-your-own tagging folder for tests: images tagged with the colours they show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def make_tagging_folder(folder: Path, n: int = 20, csv_text: str | None = None) -> Path:
    """n images of mixed size, mode and format whose left and right halves have one colour
    each; tags.csv names those colours ('|'-separated on odd rows, spaces on even ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLORS)
    rows = ["image,tags"]
    for i in range(n):
        left, right = names[i % 3], names[(i // 3) % 3]
        image = np.zeros((20 + i % 7, 30, 3), np.uint8)
        image[:, :15], image[:, 15:] = COLORS[left], COLORS[right]
        name = f"img{i}.png" if i % 2 else f"sub/img{i}.jpg"
        (folder / name).parent.mkdir(exist_ok=True)
        pil = Image.fromarray(image)
        pil = pil.convert("P") if i % 4 == 1 else pil
        pil.save(folder / name)
        tags = sorted({left, right})
        rows.append(f"{name},{'|'.join(tags) if i % 2 else ' '.join(tags)}")
    (folder / "tags.csv").write_text(csv_text if csv_text is not None else "\n".join(rows))
    return folder
