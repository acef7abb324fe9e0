from __future__ import annotations

import numpy as np

from training.data.mnist import BUNDLED_SOURCE, load_mnist


def test_idx_folder_splits_any_size_and_class_count(idx_dataset) -> None:
    folder = idx_dataset(n_train=600, n_test=150, classes=3, size=(16, 12), gz=False)
    data = load_mnist(folder)
    assert data.image_shape == (1, 16, 12)
    assert data.class_names == ["0", "1", "2"]
    assert (len(data.train), len(data.validation), len(data.test)) == (540, 60, 150)
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.int64


def test_validation_split_is_fixed_and_disjoint(idx_dataset) -> None:
    folder = idx_dataset(n_train=400)
    a, b = load_mnist(folder), load_mnist(folder)
    np.testing.assert_array_equal(a.validation.images, b.validation.images)
    np.testing.assert_array_equal(a.train.images, b.train.images)
    train_rows = {x.tobytes() for x in a.train.images}
    assert not any(x.tobytes() in train_rows for x in a.validation.images)
    assert len(a.train) + len(a.validation) == 400


def test_class_names_from_labels_txt(idx_dataset) -> None:
    folder = idx_dataset(classes=3)
    (folder / "labels.txt").write_text("circle\nsquare\ntriangle\n")
    assert load_mnist(folder).class_names == ["circle", "square", "triangle"]


def test_bundled_digits_split_stratified() -> None:
    data = load_mnist(None)
    assert data.source == BUNDLED_SOURCE
    assert (len(data.train), len(data.validation), len(data.test)) == (4000, 500, 500)
    assert data.image_shape == (1, 28, 28) and data.num_classes == 10
    for split in (data.validation, data.test):
        np.testing.assert_array_equal(np.bincount(split.labels), [50] * 10)
    # the first images of the training split are not all one digit (--limit-train relies on it)
    assert len(set(data.train.labels[:100].tolist())) == 10
    assert data.train.images.max() == 255
