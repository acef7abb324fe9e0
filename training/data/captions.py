"""Captioning data: images with one or more reference captions, and the word vocabulary.

Two sources share one shape (CaptionSplit):
- multi-digit canvases (training.data.multidigit, the tagger's generator): each canvas is
  captioned with its digits' words read left to right ("three seven one"); the digit boxes are
  kept so the attention of each generated word can be checked against where the digit is;
- a folder of photos with a CSV `image,caption`, several rows (captions) per image allowed.

Captions are tokenised by `tokenize`: lower case, words are runs of letters / digits (with an
inner apostrophe: "man's"); punctuation is dropped. BLEU is computed on the same tokens.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.idx import DataError
from training.data.multidigit import Canvases
from training.data.splits import fraction_split
from training.data.tagging_folder import load_image

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0..3 in every vocabulary
CAPTIONS_FILE = "captions.csv"
COLUMNS = ("image", "caption")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def digit_caption(sequence: Iterable[int], words: Sequence[str] = DIGIT_WORDS) -> str:
    """[3, 7, 1] -> 'three seven one'."""
    return " ".join(words[int(d)] for d in sequence)


class Vocabulary:
    """Word <-> id; ids 0..3 are <pad>, <bos>, <eos>, <unk>; vocab.txt line i holds id i."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(len(SPECIALS))

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Words seen at least min_count times, most frequent first (ties by spelling)."""
        counts = Counter(w for c in captions for w in tokenize(c))
        words = sorted((w for w, n in counts.items() if n >= min_count),
                       key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *words])

    @classmethod
    def read(cls, path: Path) -> Vocabulary:
        return cls(path.read_text(encoding="utf-8").splitlines())

    def write(self, path: Path) -> None:
        path.write_text("\n".join(self.tokens) + "\n", encoding="utf-8")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, caption: str) -> list[int]:
        return [self.index.get(w, self.unk_id) for w in tokenize(caption)]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first <eos>; <pad> and <bos> are skipped."""
        words = []
        for i in ids:
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return words

    def targets(self, captions: Sequence[str], max_length: int) -> np.ndarray:
        """int64 (N, L + 2): <bos> words <eos> <pad>...; words cut at max_length, L the longest
        caption after the cut (no column of padding only: each costs a decoder step)."""
        encoded = [self.encode(c)[:max_length] for c in captions]
        width = max((len(ids) for ids in encoded), default=0) + 2
        out = np.full((len(captions), width), self.pad_id, dtype=np.int64)
        for i, ids in enumerate(encoded):
            out[i, :len(ids) + 2] = [self.bos_id, *ids, self.eos_id]
        return out


@dataclass(frozen=True)
class CaptionSplit:
    images: np.ndarray  # uint8 (N, C, H, W)
    references: list[list[str]]  # per image, its captions
    boxes: list[np.ndarray] | None = None  # canvases: int64 (k, 4) per image, left to right

    def __len__(self) -> int:
        return len(self.images)

    def pairs(self) -> tuple[np.ndarray, list[str]]:
        """(image index, caption) for every caption: what teacher forcing trains on."""
        index = [i for i, refs in enumerate(self.references) for _ in refs]
        return np.array(index, dtype=np.int64), [c for refs in self.references for c in refs]

    def head(self, n: int) -> CaptionSplit:
        return CaptionSplit(self.images[:n], self.references[:n],
                            self.boxes[:n] if self.boxes is not None else None)


@dataclass(frozen=True)
class CaptionDataset:
    train: CaptionSplit
    validation: CaptionSplit
    test: CaptionSplit
    color: str  # "grayscale" | "rgb"
    source: str
    details: dict
    blank_lines_skipped: int = 0  # of the captions CSV (canvases have none)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        _, c, h, w = self.train.images.shape
        return int(c), int(h), int(w)


def canvas_split(canvases: Canvases) -> CaptionSplit:
    return CaptionSplit(canvases.images[:, None],
                        [[digit_caption(s)] for s in canvases.sequences], list(canvases.boxes))


@dataclass(frozen=True)
class CaptionTable:
    captions: dict[str, list[str]]  # image -> its captions, in file order
    blank_lines_skipped: int  # rows with every cell empty (blank lines, a spreadsheet's ",")


def read_captions_csv(path: Path) -> CaptionTable:
    """The captions of a CSV with the columns image and caption. Blank rows are skipped and
    counted; a row with a caption but no image name stops with its line."""
    if not path.is_file():
        raise DataError(f"{path}: captions CSV not found")
    captions: dict[str, list[str]] = {}
    blank = 0
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header: list[str] = []
        for row in reader:  # the first row that is not blank
            header = [name.strip() for name in row]
            if any(header):
                break
            blank += 1
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header must "
                            f"name {', '.join(COLUMNS)} (found: {', '.join(header) or 'none'})")
        for row in reader:
            if not any(cell.strip() for cell in row):
                blank += 1
                continue
            cells = dict(zip(header, row, strict=False))
            image, caption = cells.get("image", "").strip(), cells.get("caption", "").strip()
            if not image:
                # line_num: where the row ends, which a quoted caption's newlines move
                raise DataError(f"{path}: line {reader.line_num}: empty image name")
            if tokenize(caption):  # a caption with no word teaches nothing
                captions.setdefault(image, []).append(caption)
    if not captions:
        raise DataError(f"{path}: no captioned image")
    return CaptionTable(captions, blank)


def load_caption_folder(folder: Path, captions_csv: Path | None, image_size: int,
                        val_fraction: float, test_fraction: float,
                        split_seed: int = 0) -> CaptionDataset:
    """Photos resized (bilinear, RGB) as the server resizes them, split by image with a fixed
    seed so all captions of one photo fall in the same split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    path = Path(captions_csv) if captions_csv is not None else folder / CAPTIONS_FILE
    read = read_captions_csv(path)
    table = read.captions
    names = sorted(table)
    root = folder if all((folder / n).is_file() for n in names[:1]) else folder / "images"
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataError(f"{path}: {len(missing)} image(s) not found in {root}: "
                        f"{', '.join(missing[:3])}")
    n = len(names)
    train, val, test = fraction_split(n, val_fraction, test_fraction, str(path), split_seed)
    images = np.stack([load_image(root / name, (image_size, image_size)) for name in names])

    def split(index: np.ndarray) -> CaptionSplit:
        index = np.sort(index)
        return CaptionSplit(images[index], [table[names[i]] for i in index])

    return CaptionDataset(split(train), split(val), split(test), "rgb", f"{path} ({n} images)",
                          {"images": n, "captions": sum(len(v) for v in table.values()),
                           "blank_lines_skipped": read.blank_lines_skipped,
                           "image_folder": str(root), "split_seed": split_seed},
                          read.blank_lines_skipped)
