"""Parallel text for translation: `source<TAB>target` TSV files (the Tatoeba / Anki layout) or
two line-aligned files, one sentence per line.

Every problem names the file and the 1-based line, because a corpus of 100k lines with one
stray tab is otherwise a needle in a haystack. Blank lines (both sides empty: a blank TSV line,
or a line blank in both aligned files, such as the one Multi30k's files end with) are skipped
and counted, as OpenNMT and JoeyNMT skip them; a pair with one side empty is an error, since
it says the files are misaligned or a sentence is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.data.idx import DataError

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class ParallelCorpus:
    sources: list[str]
    targets: list[str]
    origin: str  # where it came from, for the manifest and messages
    # toy corpus only: per pair, target word index -> aligned source word index
    alignments: list[tuple[int, ...]] | None = field(default=None, compare=False)
    # lines of the file(s) read where both sides were empty, left out of the pairs
    blank_lines_skipped: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.targets):
            raise ValueError("sources and targets must be equally long")
        if self.alignments is not None and len(self.alignments) != len(self.sources):
            raise ValueError("one alignment per sentence pair")

    def __len__(self) -> int:
        return len(self.sources)

    def head(self, n: int) -> ParallelCorpus:
        aligned = self.alignments[:n] if self.alignments is not None else None
        return ParallelCorpus(self.sources[:n], self.targets[:n], self.origin, aligned,
                              self.blank_lines_skipped)

    def take(self, index: Sequence[int]) -> ParallelCorpus:
        aligned = [self.alignments[i] for i in index] if self.alignments is not None else None
        return ParallelCorpus([self.sources[i] for i in index], [self.targets[i] for i in index],
                              self.origin, aligned, self.blank_lines_skipped)


@dataclass(frozen=True)
class ParallelSplits:
    train: ParallelCorpus
    dev: ParallelCorpus
    test: ParallelCorpus
    source: str  # description of the data for the manifest

    @property
    def blank_lines_skipped(self) -> int:
        """Blank lines left out of the three splits' files (the run reports them)."""
        return sum(self.blank_lines_by_split().values())

    def blank_lines_by_split(self) -> dict[str, int]:
        return {name: corpus.blank_lines_skipped for name, corpus in
                zip(SPLITS, (self.train, self.dev, self.test), strict=True)}


def read_lines(path: Path) -> list[str]:
    """The file's lines as text; invalid UTF-8 is reported with its line and byte column."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a text file") from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark some editors write
        raw = raw[3:]
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(line.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{number}: not valid UTF-8 (byte 0x{line[e.start]:02x} "
                            f"at column {e.start + 1}); convert the file to UTF-8") from None
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if not lines:
        raise DataError(f"{path}: file is empty")
    return lines


def read_tsv(path: Path, swap: bool = False) -> ParallelCorpus:
    """source<TAB>target per line; swap=True reads target<TAB>source (e.g. eng<TAB>spa)."""
    sources, targets, blank = [], [], 0
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            blank += 1
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            what = "no tab" if len(fields) == 1 else f"{len(fields)} tab-separated fields"
            raise DataError(f"{path}:{number}: expected source<TAB>target, found {what}")
        source, target = (fields[1], fields[0]) if swap else (fields[0], fields[1])
        _check_side(path, number, source, "source")
        _check_side(path, number, target, "target")
        sources.append(source.strip())
        targets.append(target.strip())
    return _corpus(sources, targets, str(path), blank)


def read_aligned_files(source_path: Path, target_path: Path) -> ParallelCorpus:
    """Two files, line i of one translating line i of the other."""
    source_lines, target_lines = read_lines(source_path), read_lines(target_path)
    if len(source_lines) != len(target_lines):
        raise DataError(f"{source_path} has {len(source_lines)} lines but {target_path} has "
                        f"{len(target_lines)}; line-aligned files must be equally long")
    sources, targets, blank = [], [], 0
    for number, (s, t) in enumerate(zip(source_lines, target_lines, strict=True), start=1):
        if not s.strip() and not t.strip():
            blank += 1
            continue
        _check_side(source_path, number, s, "source")
        _check_side(target_path, number, t, "target")
        sources.append(s.strip())
        targets.append(t.strip())
    return _corpus(sources, targets, f"{source_path} + {target_path}", blank)


def _corpus(sources: list[str], targets: list[str], origin: str, blank: int) -> ParallelCorpus:
    if not sources:
        raise DataError(f"{origin}: no sentence pair, only {blank} blank line(s)")
    return ParallelCorpus(sources, targets, origin, blank_lines_skipped=blank)


def read_parallel(paths: Sequence[Path], swap: bool = False) -> ParallelCorpus:
    """One path: a TSV file. Two paths: a source file and its line-aligned target file."""
    if len(paths) == 1:
        return read_tsv(paths[0], swap)
    if len(paths) == 2:
        source, target = (paths[1], paths[0]) if swap else (paths[0], paths[1])
        return read_aligned_files(source, target)
    raise DataError(f"expected one TSV file or a source and a target file, got {len(paths)} "
                    "paths")


def load_splits(train: Sequence[Path] | None, dev: Sequence[Path] | None,
                test: Sequence[Path] | None, data_dir: Path | None,
                swap: bool = False) -> ParallelSplits:
    """The three splits from explicit files, or train.tsv / dev.tsv / test.tsv in data_dir."""
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise DataError(f"{data_dir}: not a folder")
        found = {}
        for split, given in zip(SPLITS, (train, dev, test), strict=True):
            found[split] = list(given) if given else [Path(data_dir) / f"{split}.tsv"]
        train, dev, test = found["train"], found["dev"], found["test"]
    missing = [f"--{name}" for name, given in zip(SPLITS, (train, dev, test), strict=True)
               if not given]
    if missing:
        raise DataError(f"give {', '.join(missing)} too (or --data-dir with train.tsv, dev.tsv "
                        "and test.tsv)")
    assert train and dev and test  # for the type checker: checked just above
    splits = [read_parallel(p, swap) for p in (train, dev, test)]
    description = str(data_dir) if data_dir is not None else \
        ", ".join(c.origin for c in splits)
    return ParallelSplits(*splits, source=description + (" (swapped)" if swap else ""))


def _check_side(path: Path, number: int, text: str, side: str) -> None:
    if not text.strip():
        raise DataError(f"{path}:{number}: the {side} side is empty")
