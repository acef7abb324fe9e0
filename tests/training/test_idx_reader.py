from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from training.data.idx import DataError, read_idx, read_image_label_pair, write_idx
from training.data.mnist import load_mnist


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_roundtrip_plain_and_gzip(tmp_path: Path, name: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    path = write_idx(tmp_path / name, images)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, images)


def test_header_layout_is_the_official_one(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "l", np.array([3, 1, 4], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])
    wide = write_idx(tmp_path / "w", np.array([[1, -2]], dtype=np.int32))
    assert wide.read_bytes()[:4] == bytes([0, 0, 0x0C, 2])
    np.testing.assert_array_equal(read_idx(wide), [[1, -2]])


def test_gzip_detected_by_magic_not_by_name(tmp_path: Path) -> None:
    labels = np.array([1, 2, 3], dtype=np.uint8)
    gz_named_plain = write_idx(tmp_path / "plain.gz.tmp", labels)  # not .gz -> plain bytes
    renamed = gz_named_plain.rename(tmp_path / "x-labels.gz")  # .gz name, plain content
    np.testing.assert_array_equal(read_idx(renamed), labels)
    gz_content = write_idx(tmp_path / "y.gz", labels).rename(tmp_path / "y-labels")
    np.testing.assert_array_equal(read_idx(gz_content), labels)


def test_reads_the_real_mnist_files(real_mnist: Path) -> None:
    labels = read_idx(real_mnist / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.max() == 9
    data = load_mnist(real_mnist)
    assert (len(data.train), len(data.validation), len(data.test)) == (55000, 5000, 10000)
    assert data.image_shape == (1, 28, 28) and data.num_classes == 10


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere.*not found"):
        load_mnist(tmp_path / "nowhere")


def test_missing_file(idx_dataset) -> None:
    folder = idx_dataset()
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*not found"):
        load_mnist(folder)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: wrong magic number"):
        read_idx(path)


def test_truncated_data(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "img", np.zeros((4, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"img: truncated.*\(4, 28, 28\)"):
        read_idx(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "hdr"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="hdr: truncated"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "img.gz", np.arange(5000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match="img.gz: damaged or truncated gzip"):
        read_idx(path)


def test_trailing_bytes_rejected(tmp_path: Path) -> None:
    path = tmp_path / "extra"
    path.write_bytes(gzip.compress(struct.pack(">HBBI", 0, 8, 1, 2) + bytes(5)))
    with pytest.raises(DataError, match="extra: 3 unexpected bytes"):
        read_idx(path)


def test_mismatched_counts(idx_dataset) -> None:
    folder = idx_dataset()
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(17, dtype=np.uint8))
    with pytest.raises(DataError, match=r"600 images but .*train-labels.* 17 labels"):
        read_image_label_pair(folder, "train")


def test_labels_out_of_range(idx_dataset) -> None:
    folder = idx_dataset(classes=3)
    # test labels mention a class the training labels never do
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(150, 7, dtype=np.uint8))
    with pytest.raises(DataError, match="t10k-labels.*label 7 is out of range"):
        load_mnist(folder)


def test_labels_out_of_range_of_named_classes(idx_dataset) -> None:
    folder = idx_dataset(classes=3)
    (folder / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match="label 2 is out of range for the 2 classes"):
        load_mnist(folder)


def test_images_must_be_three_dimensional(idx_dataset) -> None:
    folder = idx_dataset()
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((600, 16), dtype=np.uint8))
    with pytest.raises(DataError, match=r"train-images.*\(N, H, W\)"):
        load_mnist(folder)
