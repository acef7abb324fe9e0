"""Options and data as users have them: refused before training with one line and exit 2,
or trained and published; never a traceback, an out-of-memory kill or a silently wrong model."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from serving.preprocess.images import decode_images
from serving.repository import verify_version
from tests.conftest import ROOT
from tests.training.tagging_data import make_tagging_folder
from training.__main__ import build_parser, main
from training.data.idx import read_idx, write_idx
from training.data.tagging_folder import load_image
from training.data.toy_grammar import toy_splits
from training.loop import StepOutput, TrainConfig, fit
from training.losses import cross_entropy
from training.models import build_classifier
from training.outputs import LOCK_FILE
from training.tokenizer import train_sentencepiece

MNIST_QUICK = ["--arch", "softmax", "--epochs", "1", "--quiet"]
CAPTION_TINY = ["--train-canvases", "160", "--val-canvases", "24", "--epochs", "1",
                "--channels", "4,8,8", "--feature-dim", "8", "--hidden", "16", "--embed-dim", "8",
                "--attention-dim", "8", "--batch-size", "32", "--quiet"]
TRANSLATE_TINY = ["--epochs", "1", "--vocab-size", "200", "--embedding-dim", "16", "--hidden",
                  "16", "--encoder-hidden", "8", "--attention-dim", "8", "--beam-size", "2",
                  "--parity-sentences", "10", "--device", "cpu", "--quiet"]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def parse_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def write_tsv(path: Path, sources: list[str], targets: list[str]) -> Path:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in zip(sources, targets, strict=True)),
                    encoding="utf-8")
    return path


def translate_files(folder: Path, long_line: str | None = None) -> Path:
    """train.tsv / dev.tsv / test.tsv from the toy grammar, each with one long_line pair."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = toy_splits((300, 30, 30))
    for name in ("train", "dev", "test"):
        corpus = getattr(splits, name)
        extra = [long_line] if long_line else []
        write_tsv(folder / f"{name}.tsv", corpus.sources + extra, corpus.targets + extra)
    return folder


# ---- options the parser refuses ----

@pytest.mark.parametrize("argv", [
    ["mnist", "--parity-tolerance", "-1"], ["mnist", "--parity-tolerance", "0"],
    ["translate", "--parity-tolerance", "-1"], ["mnist", "--lr", "inf"],
    ["caption", "--lr", "inf"],
    ["tagger", "--val-fraction", "0"], ["tagger", "--test-fraction", "0"],
    ["tagger", "--test-fraction", "1"], ["caption", "--val-fraction", "0"],
    ["caption", "--test-fraction", "0"],
])
def test_options_that_cannot_work_are_refused_by_the_parser(argv: list[str], capsys) -> None:
    assert f"argument {argv[1]}: must" in parse_error(capsys, argv)


# ---- data checked against the options before training ----

def test_fractions_leaving_a_split_empty_are_refused(tmp_path: Path, capsys) -> None:
    folder = make_tagging_folder(tmp_path / "photos", n=6)
    code = main(["tagger", "--dataset", "folder", "--data-dir", str(folder), "--val-fraction",
                 "0.05", "--repository", str(tmp_path / "repo"),
                 "--checkpoint-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == 2
    err = one_line_error(capsys)
    assert "tags.csv: 6 images" in err and "--val-fraction 0.05" in err
    assert "the validation split would be empty" in err
    assert not (tmp_path / "repo").exists() and not (tmp_path / "runs").exists()


def test_vocab_size_below_what_sentencepiece_needs_names_the_minimum(tmp_path: Path,
                                                                     capsys) -> None:
    data = translate_files(tmp_path / "data")
    code = main(["translate", "--data-dir", str(data), *TRANSLATE_TINY, "--vocab-size", "5",
                 "--repository", str(tmp_path / "repo"),
                 "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 2
    err = one_line_error(capsys)
    found = re.search(r"--vocab-size 5 is below the (\d+) pieces SentencePiece needs for the "
                      r"(source|target) side of .*train\.tsv", err)
    assert found, err
    needed, side = int(found.group(1)), found.group(2)
    # the minimum named is SentencePiece's own: one less fails, it trains
    splits = toy_splits((300, 30, 30))
    text = splits.train.sources if side == "source" else splits.train.targets
    with pytest.raises(RuntimeError, match="smaller than required_chars"):
        train_sentencepiece(text, needed - 1)
    train_sentencepiece(text, needed)
    assert not (tmp_path / "repo").exists()


MEASURED_RUN = textwrap.dedent("""
    import resource, sys
    # a guard for the machine: the old code asked for ~20 GB here; this fails it at once
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    from training.__main__ import main
    code = main(sys.argv[1:])
    print("peak_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    sys.exit(code)
""")


def test_over_long_pairs_are_left_out_counted_and_memory_stays_bounded(tmp_path: Path) -> None:
    # 5,000 characters drawn from the corpus' own letters: thousands of pieces
    letters = sorted(set("".join(toy_splits((300, 30, 30)).train.sources)) - {" "})
    long_line = "".join(np.random.default_rng(0).choice(letters, 5000))
    data = translate_files(tmp_path / "data", long_line)
    proc = subprocess.run(
        [sys.executable, "-c", MEASURED_RUN, "translate", "--data-dir", str(data),
         *TRANSLATE_TINY, "--repository", str(tmp_path / "repo"), "--name", "long",
         "--checkpoint-dir", str(tmp_path / "runs")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert ("left out for length: 1 train and 1 dev pairs over --max-train-pieces 100, "
            "1 test pairs over --max-source-pieces 100") in proc.stdout
    peak = int(proc.stdout.split("peak_rss_bytes")[1].split()[0])
    assert peak < 2 << 30, peak
    manifest = verify_version(tmp_path / "repo" / "long" / "1")
    assert manifest.training["long_pairs_left_out"] == {"train": 1, "dev": 1, "test": 1}
    assert manifest.training["data"] == {"source": str(data), "train": 300, "dev": 30,
                                         "test": 30}
    assert manifest.metrics["n_test"] == 30
    assert manifest.metrics["test_pairs_left_out_over_limit"] == 1


def test_a_test_split_smaller_than_the_parity_batches_publishes(tmp_path: Path) -> None:
    code = main(["caption", *CAPTION_TINY, "--test-canvases", "5", "--repository",
                 str(tmp_path / "repo"), "--name", "c", "--checkpoint-dir", str(tmp_path / "r")])
    assert code == 0
    manifest = verify_version(tmp_path / "repo" / "c" / "1")
    assert manifest.metrics["n_test"] == 5
    assert max(manifest.parity["decoder_step"]["batch_sizes"]) <= 5


# ---- classes no training example has ----

def _relabel(folder: Path, split: str, change) -> None:
    path = folder / f"{split}-labels-idx1-ubyte.gz"
    write_idx(path, change(read_idx(path)).astype(np.uint8))


def _with_gap(folder: Path) -> None:
    """Labels 0, 1, 2, 4 (a 4 where some 2s were): class 3 never occurs, as a label 11 in a
    10-class set leaves class 10 empty."""
    def change(labels: np.ndarray) -> np.ndarray:
        labels = labels.copy()
        labels[np.flatnonzero(labels == 2)[::2]] = 4
        return labels
    _relabel(folder, "train", change)


def _from_one(folder: Path) -> None:
    """Labels 1..3, as EMNIST letters are labelled 1..26: class 0 never occurs."""
    for split in ("train", "t10k"):
        _relabel(folder, split, lambda labels: labels + 1)


@pytest.mark.parametrize(("relabel", "unseen"), [(_with_gap, "'3'"), (_from_one, "'0'")])
def test_classes_without_a_training_example_are_refused(idx_dataset, tmp_path: Path, capsys,
                                                        relabel, unseen: str) -> None:
    data = idx_dataset()
    relabel(data)
    code = main(["mnist", *MNIST_QUICK, "--data-dir", str(data), "--repository",
                 str(tmp_path / "repo"), "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 2
    err = one_line_error(capsys)
    assert f"no training example of class(es) {unseen}" in err
    assert "--allow-unseen-classes" in err and str(data) in err
    assert not (tmp_path / "repo").exists() and not (tmp_path / "runs").exists()


def test_unseen_classes_kept_on_request_are_reported(idx_dataset, tmp_path: Path,
                                                     capsys) -> None:
    data = idx_dataset()
    _with_gap(data)
    code = main(["mnist", *MNIST_QUICK, "--data-dir", str(data), "--allow-unseen-classes",
                 "--repository", str(tmp_path / "repo"), "--name", "m",
                 "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 0
    assert "warning: no training example of class(es) 3; kept" in capsys.readouterr().out
    manifest = verify_version(tmp_path / "repo" / "m" / "1")
    assert manifest.labels == ["0", "1", "2", "3", "4"]
    assert manifest.training["unseen_classes"] == ["3"]


# ---- the repository and the checkpoint folder ----

@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write in, root included (chattr +i where chmod does not bind)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if _writable(folder) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(folder)],
                                   capture_output=True).returncode == 0
    try:
        if _writable(folder):
            pytest.skip("cannot make a folder read-only for this user")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def _writable(folder: Path) -> bool:
    try:
        (folder / "probe").touch()
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


@pytest.mark.parametrize("where", ["file", "under-a-file", "read-only"])
def test_unusable_repository_is_refused_before_training(idx_dataset, tmp_path: Path, capsys,
                                                        request, where: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    repository = {"file": blocker, "under-a-file": blocker / "models",
                  "read-only": request.getfixturevalue("read_only_folder") / "models"}[where]
    code = main(["mnist", *MNIST_QUICK, "--data-dir", str(idx_dataset()), "--repository",
                 str(repository), "--checkpoint-dir", str(tmp_path / "runs")])
    assert code == 2
    err = one_line_error(capsys)
    assert f"--repository {repository}: " in err
    assert not (tmp_path / "runs").exists()  # refused before any training


def test_checkpoint_folder_in_use_by_another_run_is_refused(idx_dataset, tmp_path: Path,
                                                            capsys) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    with open(runs / LOCK_FILE, "a") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = main(["mnist", *MNIST_QUICK, "--data-dir", str(idx_dataset()), "--repository",
                     str(tmp_path / "repo"), "--checkpoint-dir", str(runs)])
    assert code == 2
    assert f"--checkpoint-dir {runs}: in use by another training run" in one_line_error(capsys)
    assert [p.name for p in runs.iterdir()] == [LOCK_FILE]
    assert not (tmp_path / "repo").exists()


def test_checkpoint_writes_use_their_own_temporary_names(tmp_path: Path) -> None:
    # what another writer's temporary files would look like under a fixed name
    for name in ("best.pt", "last.pt"):
        (tmp_path / f".{name}.tmp").mkdir()
    x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 2, (32,))
    model = build_classifier("softmax", (1, 4, 4), 2)

    def step(m, batch):
        return StepOutput(cross_entropy(m(batch[0]), batch[1]), len(batch[1]))

    fit(model, step, lambda epoch: [(x, y)],
        lambda m: {"loss": cross_entropy(m(x), y).item()},
        torch.optim.SGD(model.parameters(), lr=0.1),
        TrainConfig(epochs=1, checkpoint_dir=tmp_path, log=None))
    assert torch.load(tmp_path / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.pt.tmp", ".last.pt.tmp",
                                                          "best.pt", "last.pt"]


# ---- 16-bit images, decoded by the one function training and serving share ----

def test_a_16_bit_png_in_a_training_folder_is_scaled_as_the_server_scales_it(
        tmp_path: Path) -> None:
    levels = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)
    ours = load_image(path, (64, 64), mode="L")[0]
    expected = np.rint(levels * (255 / 65535)).astype(np.uint8)
    np.testing.assert_array_equal(ours, expected)
    served = decode_images([path.read_bytes()], {"color": "grayscale", "channels": 1,
                                                 "height": 64, "width": 64})
    np.testing.assert_array_equal(served[0, 0], ours.astype(np.float32))
    rgb = load_image(path, (64, 64))  # the tagger's folder loader: RGB
    assert (rgb == expected).all() and (rgb == 255).mean() < 0.01
