"""Derive a tagging CSV from image captions: the content words most captions of an image agree on.

    python -m training.data.caption_tags --captions captions.txt --out tags.csv [--top 40]

captions.txt is a CSV with the columns image and caption, several captions per image (Flickr8k
has five). A word tags an image when at least --min-captions of its captions mention it, after
lower-casing, dropping stop words and a simple lemmatisation: plural endings stripped and a few
irregular plurals mapped ("dogs" -> "dog", "children" -> "child"), and an "-ing" form merged
into its base when the captions also use the base ("running" -> "run" because "runs" occurs,
"riding" -> "ride"; "evening" stays unless "even" is used). The label set is the --top
words that tag the most images; each image keeps its words from that set, possibly none (a
negative example for every label). The CSV written is what `python -m training tagger --dataset
folder` reads: image,tags with the tags joined by '|'.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import Counter
from pathlib import Path

from training.data.idx import DataError

TOP = 40
MIN_CAPTIONS = 2
MIN_LENGTH = 2

# English function words plus caption boilerplate that names no visible thing ("in front of",
# "is wearing", counts). Content words - objects, colours, actions, places - stay.
_STOP_WORDS_TEXT = """
a about above across after against along among an and another any are around as at away back
be been being below beside besides between both but by can could did do does doing down during
each either else every few for from front further had has have having he her here hers herself
him himself his how i if in inside into is it its itself just like many me more most much my
myself near next no nor not now of off on once one only onto or other our ours out outside over
own same she should side so some something such than that the their theirs them themselves then
there these they this those through to together too top toward towards two three four five
under until up upon very was we were what when where which while who whom why will with within
without would you your yours others several lot lots wear wearing
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

IRREGULAR = {"men": "man", "women": "woman", "children": "child", "people": "person",
             "feet": "foot", "teeth": "tooth", "mice": "mouse", "geese": "goose"}
WORD = re.compile(r"[a-z]+")


def lemma(word: str) -> str:
    """Singular of a lower-case English noun by suffix rules; other words pass through."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"  # puppies -> puppy
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]  # dresses -> dress, beaches -> beach
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ous")):
        return word[:-1]  # dogs -> dog; grass, bus, tennis, various stay
    return word


def content_words(caption: str, stop_words: frozenset[str] = STOP_WORDS) -> set[str]:
    """The lemmatised words of one caption that are not stop words (each counted once)."""
    words = set()
    for word in WORD.findall(caption.lower()):
        if len(word) < MIN_LENGTH or word in stop_words:
            continue
        word = lemma(word)
        if word not in stop_words:
            words.add(word)
    return words


def ing_base(word: str, vocabulary: set[str]) -> str:
    """The base of an -ing form when the vocabulary holds it: running -> run, riding -> ride."""
    if len(word) <= 5 or not word.endswith("ing"):
        return word
    stem = word[:-3]
    candidates = [stem, stem + "e"]
    if stem[-1] == stem[-2] and stem[-1] not in "lsz":
        candidates.insert(0, stem[:-1])  # running -> run, but not falling -> fal
    return next((c for c in candidates if c in vocabulary), word)


def image_words(captions: list[str], min_captions: int = MIN_CAPTIONS,
                stop_words: frozenset[str] = STOP_WORDS,
                vocabulary: set[str] | None = None) -> set[str]:
    """Words that at least min_captions of one image's captions mention.

    With a vocabulary (the words of all captions), -ing forms count as their base word.
    """
    counts: Counter[str] = Counter()
    for caption in captions:
        words = content_words(caption, stop_words)
        if vocabulary is not None:
            words = {ing_base(w, vocabulary) for w in words}
        counts.update(words)
    return {w for w, c in counts.items() if c >= min_captions}


def read_captions(path: Path) -> dict[str, list[str]]:
    """image -> its captions, in file order."""
    if not path.is_file():
        raise DataError(f"{path}: captions file not found")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in ("image", "caption") if c not in fields]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header must "
                            "name image and caption")
        reader.fieldnames = fields
        captions: dict[str, list[str]] = {}
        for row in reader:
            image = (row.get("image") or "").strip()
            if image:
                captions.setdefault(image, []).append(row.get("caption") or "")
    if not captions:
        raise DataError(f"{path}: no captions after the header")
    return captions


def derive_tags(captions: dict[str, list[str]], top: int = TOP,
                min_captions: int = MIN_CAPTIONS,
                stop_words: frozenset[str] = STOP_WORDS
                ) -> tuple[list[str], dict[str, list[str]], Counter[str]]:
    """(labels, image -> tags, label -> number of images) for the `top` most frequent words.

    Ties in frequency are broken alphabetically so the label set is reproducible.
    """
    vocabulary = {w for caps in captions.values() for c in caps
                  for w in content_words(c, stop_words)}
    per_image = {image: image_words(caps, min_captions, stop_words, vocabulary)
                 for image, caps in captions.items()}
    frequency = Counter(w for words in per_image.values() for w in words)
    ranked = sorted(frequency.items(), key=lambda item: (-item[1], item[0]))[:top]
    labels = sorted(w for w, _ in ranked)
    keep = set(labels)
    tags = {image: sorted(words & keep) for image, words in per_image.items()}
    return labels, tags, Counter(dict(ranked))


def write_tags_csv(path: Path, tags: dict[str, list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "tags"])
        for image, words in tags.items():
            writer.writerow([image, "|".join(words)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.caption_tags",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=Path, required=True,
                        help="CSV with the columns image and caption")
    parser.add_argument("--out", type=Path, required=True, help="tags CSV to write")
    parser.add_argument("--top", type=int, default=TOP,
                        help="number of labels: the most frequent words (default: %(default)s)")
    parser.add_argument("--min-captions", type=int, default=MIN_CAPTIONS,
                        help="captions of one image that must mention a word for it to tag "
                             "the image (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.top < 1 or args.min_captions < 1:
        parser.error("--top and --min-captions must be positive")
    try:
        captions = read_captions(args.captions)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    labels, tags, counts = derive_tags(captions, args.top, args.min_captions)
    write_tags_csv(args.out, tags)
    untagged = sum(1 for words in tags.values() if not words)
    mean = sum(len(words) for words in tags.values()) / len(tags)
    print(f"wrote {args.out}: {len(tags)} images, {len(labels)} labels, {mean:.2f} tags per "
          f"image on average, {untagged} images without a tag")
    print("labels (images): " + ", ".join(f"{w} ({counts[w]})" for w in
                                          sorted(labels, key=lambda w: (-counts[w], w))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
