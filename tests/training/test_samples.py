"""The sample images the quickstart sends to the server: held-out, readable, named by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.data.mnist import load_mnist
from training.data.samples import main


def test_digit_samples_are_test_images_named_by_label(tmp_path: Path, capsys) -> None:
    main(["--out", str(tmp_path), "--count", "3"])
    paths = sorted(tmp_path.glob("*.png"))
    assert len(paths) == 3 and capsys.readouterr().out.count(".png") == 3
    test = load_mnist(None).test
    for path in paths:
        index, label = int(path.stem.split("-")[1]), path.stem.split("-")[-1]
        np.testing.assert_array_equal(np.asarray(Image.open(path)), test.images[index])
        assert label == str(int(test.labels[index]))


def test_canvas_samples_are_named_by_their_digits(tmp_path: Path) -> None:
    main(["--out", str(tmp_path), "--count", "4", "--canvases"])
    paths = sorted(tmp_path.glob("canvas-*.png"))
    assert len(paths) == 4
    for path in paths:
        image = np.asarray(Image.open(path))
        digits = path.stem.split("-digits-")[1]
        assert image.shape == (64, 64) and image.dtype == np.uint8 and image.max() > 0
        assert 1 <= len(digits) <= 4 and digits.isdigit()
