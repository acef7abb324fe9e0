"""Bring-your-own tagging data: the image folder + CSV loader and its error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.preprocess.images import decode_images
from tests.training.tagging_data import make_tagging_folder as make_folder
from training.data.idx import DataError
from training.data.tagging_folder import (
    load_image,
    load_tagging_folder,
    read_tags_csv,
    split_tags,
)


def test_split_tags() -> None:
    assert split_tags("dog|red car| sky ") == ["dog", "red car", "sky"]
    assert split_tags("dog  red\tsky") == ["dog", "red", "sky"]
    assert split_tags("dog|dog") == ["dog"] and split_tags("") == []


def test_loads_resizes_and_splits(tmp_path: Path) -> None:
    data = load_tagging_folder(make_folder(tmp_path / "d"), image_size=(12, 16),
                               val_fraction=0.2, test_fraction=0.2)
    assert data.labels == ["blue", "green", "red"] and data.color == "rgb"
    assert data.image_shape == (3, 12, 16)
    assert (len(data.train), len(data.validation), len(data.test)) == (12, 4, 4)
    assert data.train.images.dtype == np.uint8
    # an image tagged red has a reddish half: the tags line up with the pixels
    for split in (data.train, data.validation, data.test):
        for image, target in zip(split.images, split.targets, strict=True):
            halves = [image[:, :, :8].mean(axis=(1, 2)), image[:, :, 8:].mean(axis=(1, 2))]
            seen = {["red", "green", "blue"][int(np.argmax(h))] for h in halves}
            assert seen == {data.labels[j] for j in np.flatnonzero(target)}
    again = load_tagging_folder(tmp_path / "d", image_size=(12, 16), val_fraction=0.2,
                                test_fraction=0.2)
    np.testing.assert_array_equal(again.test.images, data.test.images)


def test_pixels_match_what_the_server_decodes(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "d", n=4)
    for name in ("img1.png", "sub/img2.jpg"):
        ours = load_image(folder / name, (16, 16))
        served = decode_images([(folder / name).read_bytes()],
                               {"color": "rgb", "channels": 3, "height": 16, "width": 16})
        np.testing.assert_array_equal(ours.astype(np.float32), served[0])


def test_tags_csv_elsewhere_and_untagged_images(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "d", n=6)
    csv = tmp_path / "other.csv"
    csv.write_text("tags,image,extra\nred,img1.png,x\n,img3.png,y\nblue red,img5.png,z\n")
    data = load_tagging_folder(folder, csv, image_size=(8, 8), val_fraction=0.34,
                               test_fraction=0.34)
    assert data.labels == ["blue", "red"]
    assert (len(data.train), len(data.validation), len(data.test)) == (1, 1, 1)
    all_targets = np.concatenate([data.train.targets, data.validation.targets,
                                  data.test.targets])
    assert sorted(all_targets.sum(1).tolist()) == [0, 1, 2]  # img3 is a negative for all


@pytest.mark.parametrize("csv_text, message", [
    ("file,labels\na.png,x\n", "missing column(s) image, tags"),
    ("image\nimg1.png\n", "missing column(s) tags"),
    ("image,tags\n", "no rows after the header"),
    ("image,tags\n,red\n", "line 2: empty image name"),
    ("image,tags\nimg1.png,red\nimg1.png,blue\n", "listed twice"),
    ("image,tags\nimg1.png,\nimg3.png,\n", "no image has any tag"),
    ("image,tags\nimg1.png,red\nnope.png,red\nimg3.png,red\n", "1 image(s) not found"),
    ("image,tags\nimg1.png,red\n", "too few"),
    ("image,tags\nimg1.png,red\nbroken.png,red\nimg3.png,red\nimg5.png,red\n",
     "broken.png: cannot decode image"),
])
def test_clear_errors(tmp_path: Path, csv_text: str, message: str) -> None:
    folder = make_folder(tmp_path / "d", n=6, csv_text=csv_text)
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as caught:
        load_tagging_folder(folder, image_size=(8, 8), val_fraction=0.25, test_fraction=0.25)
    assert message in str(caught.value)


def test_missing_folder_and_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data folder not found"):
        load_tagging_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="tags CSV not found"):
        load_tagging_folder(tmp_path / "empty")
    with pytest.raises(DataError, match="tags CSV not found"):
        read_tags_csv(tmp_path / "empty" / "x.csv")
