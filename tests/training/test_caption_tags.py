"""Deriving tags from captions: content words at least 2 of an image's captions mention."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from training.data.caption_tags import (
    content_words,
    derive_tags,
    ing_base,
    lemma,
    read_captions,
)
from training.data.idx import DataError
from training.data.tagging_folder import read_tags_csv

CAPTIONS = """image,caption
a.jpg,Two dogs are running on the beach .
a.jpg,"A dog runs along the sand , near the water ."
a.jpg,A brown dog is running through water
a.jpg,Dogs playing at the beach
a.jpg,A puppy in the waves .
b.jpg,A man in a red shirt rides a bike .
b.jpg,The man is riding his bicycle down a street
b.jpg,"A cyclist , in red , on the street ."
b.jpg,Men riding bikes
b.jpg,A person on a bike .
c.jpg,Children playing in the snow
c.jpg,A child is sitting in the snow .
c.jpg,Two kids play outside
c.jpg,A girl sits on a sled
c.jpg,The children run .
"""


@pytest.fixture
def captions_file(tmp_path: Path) -> Path:
    path = tmp_path / "captions.txt"
    path.write_text(CAPTIONS)
    return path


@pytest.mark.parametrize("word, expected", [
    ("dogs", "dog"), ("puppies", "puppy"), ("dresses", "dress"), ("beaches", "beach"),
    ("children", "child"), ("men", "man"), ("grass", "grass"), ("bus", "bus"),
    ("tennis", "tennis"), ("dog", "dog"), ("boxes", "box"),
])
def test_lemma(word: str, expected: str) -> None:
    assert lemma(word) == expected


def test_ing_forms_merge_only_into_bases_the_captions_use() -> None:
    vocabulary = {"run", "ride", "sit", "fall"}
    assert ing_base("running", vocabulary) == "run"
    assert ing_base("riding", vocabulary) == "ride"
    assert ing_base("sitting", vocabulary) == "sit"
    assert ing_base("falling", vocabulary) == "fall"
    assert ing_base("evening", vocabulary) == "evening"  # "even" is not in the vocabulary
    assert ing_base("swing", vocabulary) == "swing"  # too short to be an -ing form


def test_content_words_drop_stop_words_and_count_once() -> None:
    assert content_words("Two dogs are running on the beach with the dogs .") == {
        "dog", "running", "beach"}


def test_derive_tags_needs_two_captions_and_keeps_the_top_words(captions_file: Path) -> None:
    captions = read_captions(captions_file)
    assert [len(c) for c in captions.values()] == [5, 5, 5]
    labels, tags, counts = derive_tags(captions, top=100, min_captions=2)
    # a.jpg: dog (4 captions), run (running x2 + runs), beach (2), water (2); "sand" only once
    assert tags["a.jpg"] == ["beach", "dog", "run", "water"]
    # b.jpg: man (man x2 + men), red, street, bike (3), ride (rides, riding x2); not "cyclist"
    assert tags["b.jpg"] == ["bike", "man", "red", "ride", "street"]
    # c.jpg: child (children x2 + child), snow, play (playing + play), sit (sitting + sits);
    # "run" appears once here, so it tags a.jpg only
    assert tags["c.jpg"] == ["child", "play", "sit", "snow"]
    assert counts["dog"] == 1 and "two" not in labels and "the" not in labels
    top_labels, top_tags, _ = derive_tags(captions, top=3)
    # every word tags one image; ties are broken alphabetically
    assert top_labels == ["beach", "bike", "child"]
    assert top_tags["a.jpg"] == ["beach"] and top_tags["b.jpg"] == ["bike"]


def test_cli_writes_a_csv_the_folder_loader_reads(captions_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "derived" / "tags.csv"
    proc = subprocess.run([sys.executable, "-m", "training.data.caption_tags", "--captions",
                           str(captions_file), "--out", str(out), "--top", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "3 images, 5 labels" in proc.stdout
    rows = dict(read_tags_csv(out))
    assert set(rows) == {"a.jpg", "b.jpg", "c.jpg"}
    assert all(set(tags) <= {"beach", "bike", "child", "dog", "man"} for tags in rows.values())
    missing = subprocess.run([sys.executable, "-m", "training.data.caption_tags", "--captions",
                              str(tmp_path / "nope.txt"), "--out", str(out)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "captions file not found" in missing.stderr


def test_bad_captions_file(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("image,text\na.jpg,hello\n")
    with pytest.raises(DataError, match="missing column"):
        read_captions(path)
