"""Caption text from digit sequences, tokenisation, the vocabulary and the captions CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.captions import (
    SPECIALS,
    Vocabulary,
    canvas_split,
    digit_caption,
    load_caption_folder,
    read_captions_csv,
    tokenize,
)
from training.data.idx import DataError
from training.data.mnist import load_mnist
from training.data.multidigit import make_multidigit


def test_digit_caption_reads_the_sequence_left_to_right():
    assert digit_caption([3, 7, 1]) == "three seven one"
    assert digit_caption(np.array([0])) == "zero"


def test_canvas_captions_follow_the_generator_sequences_and_keep_boxes():
    canvases = make_multidigit(load_mnist(None), (20, 5, 5), seed=1).train
    split = canvas_split(canvases)
    assert split.images.shape == (20, 1, 64, 64)
    for i in range(20):
        words = split.references[i][0].split()
        assert words == [digit_caption([d]) for d in canvases.sequences[i]]
        assert len(split.boxes[i]) == len(words)
        # left to right: box x-centres do not decrease along the caption
        centres = split.boxes[i][:, 0] + split.boxes[i][:, 2]
        assert np.all(np.diff(centres) >= 0)


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A dog's ball , red .") == ["a", "dog's", "ball", "red"]


def test_vocabulary_round_trip(tmp_path: Path):
    vocab = Vocabulary.build(["a dog runs", "A dog sits .", "cat"], min_count=1)
    assert vocab.tokens[:4] == list(SPECIALS)
    assert vocab.tokens[4:6] == ["a", "dog"]  # most frequent first
    path = tmp_path / "vocab.txt"
    vocab.write(path)
    again = Vocabulary.read(path)
    assert again.tokens == vocab.tokens
    assert path.read_text().splitlines()[again.eos_id] == "<eos>"
    ids = again.encode("a dog flies")
    assert ids[-1] == again.unk_id
    assert again.decode([again.bos_id, *ids, again.eos_id, 5]) == ["a", "dog", "<unk>"]


def test_min_count_and_targets():
    vocab = Vocabulary.build(["a b", "a c"], min_count=2)
    assert vocab.tokens == [*SPECIALS, "a"]
    t = vocab.targets(["a a a a", "a"], max_length=3)
    assert t.tolist() == [[1, 4, 4, 4, 2], [1, 4, 2, 0, 0]]


def test_vocabulary_rejects_a_missing_special_prefix():
    with pytest.raises(ValueError):
        Vocabulary(["a", "b"])


def _photo_folder(tmp_path: Path, n: int = 10) -> Path:
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    lines = ["image,caption"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(
            images / f"p{i}.png")
        lines += [f"p{i}.png,A photo number {i} .", f'p{i}.png,"another, caption"']
    (tmp_path / "captions.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_caption_folder_keeps_every_caption_and_splits_by_image(tmp_path: Path):
    root = _photo_folder(tmp_path)
    table = read_captions_csv(root / "captions.txt")
    assert table.captions["p3.png"] == ["A photo number 3 .", "another, caption"]
    assert table.blank_lines_skipped == 0
    data = load_caption_folder(root / "images", root / "captions.txt", 16, 0.2, 0.2)
    assert data.image_shape == (3, 16, 16)
    assert (len(data.train), len(data.validation), len(data.test)) == (6, 2, 2)
    assert all(len(r) == 2 for r in data.test.references)
    index, captions = data.train.pairs()
    assert len(index) == len(captions) == 12 and index.tolist()[:2] == [0, 0]


def test_captions_csv_skips_and_counts_blank_rows(tmp_path: Path):
    path = tmp_path / "c.csv"
    # a blank line before the header, between rows, a spreadsheet's empty row, one at the end
    path.write_text('\nimage,caption\na.png,a dog\n\n,\nb.png,"two\nlines"\n\n')
    table = read_captions_csv(path)
    assert table.captions == {"a.png": ["a dog"], "b.png": ["two\nlines"]}
    assert table.blank_lines_skipped == 4
    (tmp_path / "photos").mkdir()
    root = _photo_folder(tmp_path / "photos")
    with (root / "captions.txt").open("a") as f:
        f.write("\n\n")
    data = load_caption_folder(root / "images", root / "captions.txt", 16, 0.2, 0.2)
    assert data.blank_lines_skipped == 2 and data.details["blank_lines_skipped"] == 2


def test_captions_csv_row_without_image_names_its_line(tmp_path: Path):
    path = tmp_path / "c.csv"
    path.write_text('image,caption\na.png,"a\ndog"\n\n,no image here\n')
    with pytest.raises(DataError, match=r"c\.csv: line 5: empty image name"):
        read_captions_csv(path)


def test_captions_csv_needs_its_columns(tmp_path: Path):
    path = tmp_path / "c.csv"
    path.write_text("file,text\na.png,hello\n")
    with pytest.raises(DataError, match="missing column"):
        read_captions_csv(path)
