"""Bring-your-own tagging data: a folder of images plus a CSV `image,tags`.

    photos/
        tags.csv        image,tags
                        beach.jpg,dog|sand|water
                        park.png,dog grass
                        empty.jpg,              (no tags: a negative for every label)
        beach.jpg ...

Image paths in the CSV are relative to the folder. Tags are separated by '|' when the field
holds one (so a tag may contain spaces), by whitespace otherwise. The label set is every tag
that occurs, sorted by name. Images are decoded by serving's own image_pixels (EXIF orientation
applied, 16-bit scaled to 8 bits, converted to RGB, resized bilinearly to a fixed size), exactly
as the server converts an uploaded image, so training and serving see the same pixels. The
train / validation / test split (training.data.splits) is drawn with its own fixed seed, and
refused when a split would be empty.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from serving.preprocess.images import image_pixels
from training.data.idx import DataError
from training.data.splits import fraction_split
from training.data.tagging import TaggingDataset, TaggingSplit

TAGS_FILE = "tags.csv"
IMAGE_SIZE = 64
VAL_FRACTION = 0.15
TEST_FRACTION = 0.15
SPLIT_SEED = 0
COLUMNS = ("image", "tags")


def split_tags(field: str) -> list[str]:
    """'a|b c' -> ['a', 'b c']; 'a b' -> ['a', 'b']; duplicates dropped, order kept."""
    parts = field.split("|") if "|" in field else re.split(r"\s+", field)
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


def read_tags_csv(path: Path) -> list[tuple[str, list[str]]]:
    """(image path, tags) rows of a CSV with the columns image and tags (others ignored)."""
    if not path.is_file():
        raise DataError(f"{path}: tags CSV not found")
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
        reader = csv.DictReader(f)
        fields = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in fields]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header must "
                            f"name {', '.join(COLUMNS)} (found: {', '.join(fields) or 'none'})")
        reader.fieldnames = fields
        rows, seen = [], {}
        for line, row in enumerate(reader, start=2):
            image = (row.get("image") or "").strip()
            if not image:
                raise DataError(f"{path}: line {line}: empty image name")
            if image in seen:
                raise DataError(f"{path}: line {line}: image {image} is listed twice "
                                f"(first on line {seen[image]}); give all its tags in one row")
            seen[image] = line
            rows.append((image, split_tags(row.get("tags") or "")))
    if not rows:
        raise DataError(f"{path}: no rows after the header")
    return rows


def load_image(path: Path, size: tuple[int, int], mode: str = "RGB") -> np.ndarray:
    """uint8 (C, H, W) for size = (height, width), decoded as the server decodes."""
    height, width = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                array = image_pixels(img, mode, height, width)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from e
    return array.reshape(height, width, -1).transpose(2, 0, 1)


def load_tagging_folder(folder: Path, tags_csv: Path | None = None,
                        image_size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE),
                        val_fraction: float = VAL_FRACTION,
                        test_fraction: float = TEST_FRACTION,
                        split_seed: int = SPLIT_SEED) -> TaggingDataset:
    """Decode every image of the CSV and split them; tags_csv defaults to folder/tags.csv."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found")
    tags_csv = Path(tags_csv) if tags_csv is not None else folder / TAGS_FILE
    rows = read_tags_csv(tags_csv)
    labels = sorted({tag for _, tags in rows for tag in tags})
    if not labels:
        raise DataError(f"{tags_csv}: no image has any tag")
    missing = [image for image, _ in rows if not (folder / image).is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"{tags_csv}: {len(missing)} image(s) not found in {folder}: "
                        f"{', '.join(missing[:3])}{more}")
    n = len(rows)
    train, val, test = fraction_split(n, val_fraction, test_fraction, str(tags_csv), split_seed)
    images = np.stack([load_image(folder / image, image_size) for image, _ in rows])
    index = {label: i for i, label in enumerate(labels)}
    targets = np.zeros((n, len(labels)), dtype=np.uint8)
    for i, (_, tags) in enumerate(rows):
        targets[i, [index[t] for t in tags]] = 1
    everything = TaggingSplit(images, targets)
    return TaggingDataset(
        train=everything.take(train), validation=everything.take(val),
        test=everything.take(test), labels=labels, color="rgb", source=str(folder),
        details={"tags_csv": str(tags_csv), "images": n, "image_size": list(image_size),
                 "resize": "bilinear", "split_seed": split_seed,
                 "val_fraction": val_fraction, "test_fraction": test_fraction})
