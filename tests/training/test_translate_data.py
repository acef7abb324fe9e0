"""Parallel text files: the layouts that work and the errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.__main__ import main
from training.data.idx import DataError
from training.data.parallel import load_splits, read_aligned_files, read_parallel, read_tsv
from training.data.toy_grammar import toy_splits
from training.tokenizer import TranslationTokenizer


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_tsv_reads_pairs_with_bom_crlf_and_swap(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "\ufeffHola.\tHello.\r\n¿Qué tal?\t How are you? \n")
    corpus = read_tsv(path)
    assert corpus.sources == ["Hola.", "¿Qué tal?"]
    assert corpus.targets == ["Hello.", "How are you?"]
    swapped = read_tsv(path, swap=True)
    assert swapped.sources == corpus.targets and swapped.targets == corpus.sources


def test_line_aligned_files(tmp_path: Path) -> None:
    src = write(tmp_path / "train.es", "uno\ndos\n")
    tgt = write(tmp_path / "train.en", "one\ntwo\n")
    corpus = read_parallel([src, tgt])
    assert corpus.sources == ["uno", "dos"] and corpus.targets == ["one", "two"]
    assert read_parallel([src, tgt], swap=True).sources == ["one", "two"]
    write(tgt, "one\n")
    with pytest.raises(DataError, match=r"train\.es has 2 lines but .*train\.en has 1"):
        read_aligned_files(src, tgt)


@pytest.mark.parametrize(("content", "message"), [
    ("uno\tone\ndos one\n", r"bad\.tsv:2: expected source<TAB>target, found no tab"),
    ("uno\tone\tCC-BY\n", r"bad\.tsv:1: expected source<TAB>target, found 3 tab-separated"),
    ("uno\tone\n\t two\n", r"bad\.tsv:2: the source side is empty"),
    ("uno\tone\ntres\t  \n", r"bad\.tsv:2: the target side is empty"),
    ("uno\tone\n\ndos two\n", r"bad\.tsv:3: expected source<TAB>target, found no tab"),
    ("\n\n", r"bad\.tsv: no sentence pair, only 2 blank line\(s\)"),
    ("", r"bad\.tsv: file is empty"),
])
def test_malformed_tsv_lines_are_named(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_tsv(write(tmp_path / "bad.tsv", content))


def test_invalid_utf8_names_file_line_and_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "latin1.tsv", b"uno\tone\n" + "año\tyear\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.tsv:2: not valid UTF-8 \(byte 0xf1 at "
                                        r"column 2\)"):
        read_tsv(path)


def test_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    # as Multi30k's files are: a blank line at the end (and here one in the middle too)
    tsv = read_tsv(write(tmp_path / "train.tsv", "uno\tone\n\ndos\ttwo\n \t \n\n"))
    assert (tsv.sources, tsv.targets) == (["uno", "dos"], ["one", "two"])
    assert tsv.blank_lines_skipped == 3
    src = write(tmp_path / "train.de", "eins\n\nzwei\n\n")
    tgt = write(tmp_path / "train.en", "one\n \ntwo\n\n")
    aligned = read_parallel([src, tgt])
    assert (aligned.sources, aligned.targets) == (["eins", "zwei"], ["one", "two"])
    assert aligned.blank_lines_skipped == 2 and aligned.head(1).blank_lines_skipped == 2
    splits = load_splits([src, tgt], [tmp_path / "train.tsv"], [tmp_path / "train.tsv"], None)
    assert splits.blank_lines_skipped == 2 + 3 + 3


def test_one_sided_empty_line_still_stops_with_file_and_line(tmp_path: Path) -> None:
    src = write(tmp_path / "train.de", "eins\nzwei\n\n")
    tgt = write(tmp_path / "train.en", "one\n\nthree\n")
    with pytest.raises(DataError, match=r"train\.en:2: the target side is empty"):
        read_aligned_files(src, tgt)
    with pytest.raises(DataError, match=r"t\.tsv:3: the source side is empty"):
        read_tsv(write(tmp_path / "t.tsv", "uno\tone\n\n\tthree\n"))


def test_empty_line_in_aligned_files(tmp_path: Path) -> None:
    src = write(tmp_path / "s.txt", "uno\n \n")
    tgt = write(tmp_path / "t.txt", "one\ntwo\n")
    with pytest.raises(DataError, match=r"s\.txt:2: the source side is empty"):
        read_aligned_files(src, tgt)


def test_splits_from_a_folder_and_missing_pieces(tmp_path: Path) -> None:
    for split in ("train", "dev", "test"):
        write(tmp_path / f"{split}.tsv", f"{split} es\t{split} en\n")
    splits = load_splits(None, None, None, tmp_path)
    assert splits.test.sources == ["test es"] and splits.dev.targets == ["dev en"]
    with pytest.raises(DataError, match="give --dev, --test too"):
        load_splits([tmp_path / "train.tsv"], None, None, None)
    (tmp_path / "dev.tsv").unlink()
    with pytest.raises(DataError, match=r"dev\.tsv: file not found"):
        load_splits(None, None, None, tmp_path)


def test_cli_reports_data_errors_without_traceback(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.tsv", "uno\tone\n")
    bad = write(tmp_path / "bad.tsv", "uno\tone\ndos\n")
    code = main(["translate", "--train", str(bad), "--dev", str(good), "--test", str(good),
                 "--repository", str(tmp_path / "repo"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"error: {bad}:2: expected source<TAB>target, found no tab"
    assert not (tmp_path / "repo").exists()


def test_cli_trains_on_files_with_swap(tmp_path: Path) -> None:
    """The file path end to end at a tiny size: TSV and line-aligned splits, --swap, and files
    that end with a blank line, as Multi30k's do."""
    splits = toy_splits((300, 30, 30))
    write(tmp_path / "train.tsv", "".join(f"{t}\t{s}\n" for s, t in
                                          zip(splits.train.sources, splits.train.targets,
                                              strict=True)) + "\n")
    write(tmp_path / "dev.en", "".join(t + "\n" for t in splits.dev.targets) + "\n")
    write(tmp_path / "dev.es", "".join(s + "\n" for s in splits.dev.sources) + "\n")
    write(tmp_path / "test.tsv", "".join(f"{t}\t{s}\n" for s, t in
                                         zip(splits.test.sources, splits.test.targets,
                                             strict=True)))
    code = main(["translate", "--swap", "--train", str(tmp_path / "train.tsv"),
                 "--dev", str(tmp_path / "dev.en"), str(tmp_path / "dev.es"),
                 "--test", str(tmp_path / "test.tsv"), "--epochs", "1", "--vocab-size", "200",
                 "--embedding-dim", "16", "--hidden", "16", "--encoder-hidden", "8",
                 "--attention-dim", "8", "--beam-size", "2", "--parity-sentences", "20",
                 "--repository", str(tmp_path / "repo"), "--name", "files",
                 "--checkpoint-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == 0
    manifest = json.loads((tmp_path / "repo" / "files" / "1" / "manifest.json").read_text())
    training = manifest["training"]
    assert training["data_kind"] == "files" and training["swap"] is True
    assert training["dev"] == [str(tmp_path / "dev.en"), str(tmp_path / "dev.es")]
    assert training["data"]["train"] == 300 and training["data"]["source"].endswith("(swapped)")
    assert manifest["metrics"]["n_test"] == 30 and "attention_alignment" not in manifest["metrics"]
    # the source model was trained on the Spanish side: it knows "gato", not "cat"
    source = TranslationTokenizer.load(tmp_path / "repo" / "files" / "1").source
    assert len(source.encode("gato")) < len(source.encode("cat"))
    # and the run folder holds what a checkpoint needs to be decoded again
    config = json.loads((tmp_path / "runs" / "model_config.json").read_text())
    assert config["hidden"] == 16 and (tmp_path / "runs" / "source.model").is_file()
