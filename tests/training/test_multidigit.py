"""The multi-digit canvas generator: reproducible, split-pure and self-consistent."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.mnist import load_mnist
from training.data.multidigit import (
    generate_canvases,
    ink_boxes,
    make_multidigit,
    overlap_fraction,
)


@pytest.fixture(scope="module")
def digits():
    return load_mnist(None)


@pytest.fixture(scope="module")
def data(digits):
    return make_multidigit(digits, (300, 100, 100), seed=3)


def test_same_seed_same_canvases_other_seed_other_canvases(digits) -> None:
    a = generate_canvases(digits.test, 50, seed=7)
    b = generate_canvases(digits.test, 50, seed=7)
    c = generate_canvases(digits.test, 50, seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.tags, b.tags)
    for x, y in zip(a.boxes + a.sequences + a.sources, b.boxes + b.sequences + b.sources,
                    strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images, c.images)


def test_a_split_does_not_change_when_another_grows(digits) -> None:
    small = make_multidigit(digits, (50, 20, 20), seed=1)
    large = make_multidigit(digits, (80, 20, 20), seed=1)
    np.testing.assert_array_equal(small.test.images, large.test.images)
    np.testing.assert_array_equal(small.train.images, large.train.images[:50])


def test_splits_never_share_source_digits(digits, data) -> None:
    def used(canvases, split):
        return {split.images[i].tobytes() for s in canvases.sources for i in s}

    train = used(data.train, digits.train)
    validation = used(data.validation, digits.validation)
    test = used(data.test, digits.test)
    assert train and validation and test
    assert not train & validation and not train & test and not validation & test


def test_tags_boxes_and_sequences_agree_with_the_pixels(digits, data) -> None:
    canvases, split = data.train, digits.train
    crops = ink_boxes(split.images)
    counts = set()
    for i in range(len(canvases)):
        boxes, sequence, sources = canvases.boxes[i], canvases.sequences[i], canvases.sources[i]
        counts.add(len(sequence))
        assert len(boxes) == len(sequence) == len(sources) and 1 <= len(sequence) <= 4
        assert len(set(sources.tolist())) == len(sources)  # no source digit twice
        np.testing.assert_array_equal(sequence, split.labels[sources])
        np.testing.assert_array_equal(np.flatnonzero(canvases.tags[i]), np.unique(sequence))
        centres = boxes[:, 0] + boxes[:, 2]
        assert (np.diff(centres) >= 0).all()  # left to right
        covered = np.zeros((64, 64), dtype=bool)
        for (x0, y0, x1, y1), src in zip(boxes, sources, strict=True):
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            cx0, cy0, cx1, cy1 = crops[src]
            crop = split.images[src, cy0:cy1, cx0:cx1]
            assert crop.shape == (y1 - y0, x1 - x0)
            # max compositing: the digit's strokes are all there, maybe brightened by a neighbour
            assert (canvases.images[i, y0:y1, x0:x1] >= crop).all()
            covered[y0:y1, x0:x1] = True
        assert canvases.images[i][~covered].max(initial=0) == 0  # nothing outside the boxes
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                assert overlap_fraction(boxes[a], boxes[b]) <= 0.1
        assert canvases.sequence_text(i) == "".join(map(str, sequence))
    assert counts == {1, 2, 3, 4}


def test_options_are_honoured(digits) -> None:
    c = generate_canvases(digits.test, 40, seed=0, canvas_size=48, min_digits=2, max_digits=2,
                          max_overlap=0.0)
    assert c.images.shape == (40, 48, 48)
    assert all(len(s) == 2 for s in c.sequences)
    assert all(overlap_fraction(*b) == 0.0 for b in c.boxes)
    tagging = make_multidigit(digits, (5, 5, 5), canvas_size=48).as_tagging("bundled")
    assert tagging.image_shape == (1, 48, 48) and tagging.labels == [str(d) for d in range(10)]
    assert tagging.color == "grayscale" and tagging.train.targets.shape == (5, 10)


def test_impossible_layouts_are_refused(digits) -> None:
    with pytest.raises(ValueError, match="could not place 4 digits"):
        generate_canvases(digits.test, 3, seed=0, canvas_size=30, min_digits=4, max_digits=4,
                          max_overlap=0.0)
    with pytest.raises(ValueError, match="do not fit"):
        generate_canvases(digits.test, 3, seed=0, canvas_size=10)
    with pytest.raises(ValueError, match="min_digits"):
        generate_canvases(digits.test, 3, seed=0, min_digits=3, max_digits=2)


def test_ink_boxes() -> None:
    images = np.zeros((2, 6, 8), dtype=np.uint8)
    images[0, 1:3, 2:5] = 200
    images[0, 0, 0] = 1  # a near-black background pixel is not ink
    assert ink_boxes(images).tolist() == [[2, 1, 5, 3], [0, 0, 8, 6]]  # empty: whole image
