"""The graphs' contract with their manifest, checked before a version may serve.

Runners and clients rely on what a manifest says of its graphs: tensor names and dtypes, ranks,
fixed sizes, which axes are dynamic, one score per label or per vocabulary piece. A graph that
breaks it fails only later, on real calls: a batch axis fixed at 1 fails every merged batch, 20
columns for 10 labels break top-k. So each graph's declared inputs and outputs (what
onnxruntime reads from the file) are compared with the contract, and then every graph runs on
zeros at two batch sizes, because what a graph declares is not always what it does.

Sizes are named across a version's graphs: B the batch and S the source length (both must be
dynamic), V the vocabulary, L the labels, C the image regions (rows x cols), D and F the state
and memory widths (whatever they are, the same in every graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.repository.errors import ManifestError
from serving.repository.graph_io import (
    ATTENTION,
    DECODER_STEP,
    ENCODER,
    LOG_PROBS,
    MEMORY,
    MODEL,
    NEW_STATE,
    PREV_IDS,
    PROBABILITIES,
    SRC_IDS,
    SRC_LENGTHS,
    SRC_MASK,
    STATE,
)
from serving.repository.manifest import Manifest, TensorSpec
from serving.repository.safe_files import inside, read_regular
from serving.repository.sections import SentencePieceTokenizer, VocabularyTokenizer

Dim = int | str  # a fixed size, or a size named across the graphs

ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "uint8": "tensor(uint8)",
             "int32": "tensor(int32)", "int64": "tensor(int64)", "bool": "tensor(bool)",
             "bytes": "tensor(string)"}
BATCH, SOURCE = "B", "S"
PROBE_BATCHES = (1, 3)
PROBE_SOURCE_LENGTH = 2


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # as the manifest spells it
    shape: tuple[Dim, ...]


@dataclass(frozen=True)
class Contract:
    """One graph: exactly these inputs, at least these outputs."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


@dataclass
class Sizes:
    """What the named sizes are: known ones given, the others learnt from the first graph
    that fixes them; a graph that fixes one otherwise does not fit."""

    known: dict[str, int]
    dynamic: frozenset[str]  # sizes a graph must leave dynamic: a call chooses them
    seen: dict[str, tuple[int, str]] = field(default_factory=dict)

    def check(self, dim: Dim, size: int | None, where: str) -> None:
        """size: what a graph fixes (declared or measured), None where it is dynamic."""
        if isinstance(dim, int):
            if size is not None and size != dim:
                raise ManifestError(f"{where} is {size}; the manifest says {dim}")
            return
        if size is None:
            return
        if dim in self.dynamic and dim not in self.known:
            raise ManifestError(f"{where} is fixed at {size}, but the manifest declares it "
                                "dynamic (-1): calls of other sizes would fail")
        if dim in self.known:
            if size != self.known[dim]:
                raise ManifestError(f"{where} is {size}; it must be {self.known[dim]} "
                                    f"({_MEANING.get(dim, dim)})")
        elif dim in self.seen and self.seen[dim][0] != size:
            raise ManifestError(f"{where} is {size}, but {self.seen[dim][1]} is "
                                f"{self.seen[dim][0]}: the graphs disagree")
        else:
            self.seen.setdefault(dim, (size, where))


_MEANING = {"V": "the vocabulary size", "L": "the number of labels",
            "C": "grid rows x cols", BATCH: "the batch size", SOURCE: "the source length"}


def check_graphs(manifest: Manifest, version_dir: Path, sessions: Mapping[str, Any]) -> None:
    """Refuse (ManifestError) a version whose graphs do not do what its manifest says.

    sessions: onnxruntime sessions by graph role; version_dir already verified (every file
    it names inside it and hashed)."""
    contracts, known = graph_contracts(manifest, version_dir)
    sizes = Sizes(known, frozenset({BATCH, SOURCE}) | _free_input_axes(contracts))
    for role, contract in contracts.items():
        _check_declared(manifest.graphs[role], contract, sessions[role], sizes)
    for batch in PROBE_BATCHES:
        _probe(manifest, version_dir, contracts, sessions,
               {**known, BATCH: batch, SOURCE: PROBE_SOURCE_LENGTH})


def graph_contracts(manifest: Manifest,
                    version_dir: Path) -> tuple[dict[str, Contract], dict[str, int]]:
    """Each graph's contract by role, and the sizes the manifest and tokenizer fix."""
    if manifest.task in ("classify", "tag"):
        labels = len(manifest.labels)
        outputs = tuple(_from_spec(s, f"{s.name}.", labels if s.name == PROBABILITIES
                                   else None) for s in manifest.outputs)
        inputs = tuple(_from_spec(s, f"{s.name}.") for s in manifest.inputs)
        return {MODEL: Contract(inputs, outputs)}, {"L": labels}
    vocabulary = vocabulary_size(manifest, version_dir)
    if manifest.grid is not None:
        regions = "C"
        known = {"V": vocabulary, "C": manifest.grid.cells}
        encoder_inputs = tuple(_from_spec(s, f"{s.name}.") for s in manifest.inputs[:1])
    else:
        regions = SOURCE
        known = {"V": vocabulary}
        encoder_inputs = (Tensor(SRC_IDS, "int64", (BATCH, SOURCE)),
                          Tensor(SRC_LENGTHS, "int64", (BATCH,)))
    state, memory = (BATCH, "D"), (BATCH, regions, "F")
    encoder = Contract(encoder_inputs, (Tensor(MEMORY, "float32", memory),
                                        Tensor(STATE, "float32", state)))
    step = Contract((Tensor(PREV_IDS, "int64", (BATCH,)), Tensor(STATE, "float32", state),
                     Tensor(MEMORY, "float32", memory),
                     Tensor(SRC_MASK, "bool", (BATCH, regions))),
                    (Tensor(LOG_PROBS, "float32", (BATCH, "V")),
                     Tensor(NEW_STATE, "float32", state),
                     Tensor(ATTENTION, "float32", (BATCH, regions))))
    return {ENCODER: encoder, DECODER_STEP: step}, known


def vocabulary_size(manifest: Manifest, version_dir: Path) -> int:
    """Pieces the decoder step must score: the target SentencePiece model's, or the lines of
    the caption vocabulary (what the runners decode ids with)."""
    tok = manifest.tokenizer
    if isinstance(tok, SentencePieceTokenizer):
        return _sentencepiece(version_dir, tok.target_file).get_piece_size()
    assert isinstance(tok, VocabularyTokenizer)  # Manifest.from_dict: one of the two
    rel = tok.vocab_file
    raw = read_regular(inside(version_dir, rel), manifest.files[rel]["bytes"])
    return len(raw.decode("utf-8").splitlines())


def _sentencepiece(version_dir: Path, rel: str) -> Any:
    import sentencepiece as spm  # only sequence models need it

    return spm.SentencePieceProcessor(model_file=str(inside(version_dir, rel)))


def _from_spec(spec: TensorSpec, prefix: str, width: int | None = None) -> Tensor:
    """A manifest tensor: -1 is the batch on axis 0 and a size of the call's choosing on an
    input's other axes (named per axis, so each may differ)."""
    shape: list[Dim] = [BATCH if i == 0 and d == -1 else f"{prefix}{i}" if d == -1 else d
                        for i, d in enumerate(spec.shape)]
    if width is not None and shape and not isinstance(shape[-1], int):
        shape[-1] = "L"
    return Tensor(spec.name, spec.dtype, tuple(shape))


def _free_input_axes(contracts: dict[str, Contract]) -> frozenset[str]:
    """The -1 axes of inputs beyond the batch: a call chooses them, so a graph must not fix
    them; those of outputs are the graph's to choose."""
    return frozenset(d for c in contracts.values() for t in c.inputs for d in t.shape
                     if isinstance(d, str) and "." in d)


def _check_declared(graph: str, contract: Contract, session: Any, sizes: Sizes) -> None:
    declared_inputs = {a.name: a for a in session.get_inputs()}
    declared_outputs = {a.name: a for a in session.get_outputs()}
    wanted = [t.name for t in contract.inputs]
    if set(declared_inputs) != set(wanted):
        raise ManifestError(f"{graph}: inputs are {sorted(declared_inputs)}; the manifest "
                            f"and the {graph} contract say {sorted(wanted)}")
    missing = [t.name for t in contract.outputs if t.name not in declared_outputs]
    if missing:
        raise ManifestError(f"{graph}: has no output {missing} (it has "
                            f"{sorted(declared_outputs)})")
    for kind, tensors, declared in (("input", contract.inputs, declared_inputs),
                                    ("output", contract.outputs, declared_outputs)):
        for t in tensors:
            arg = declared[t.name]
            if arg.type != ORT_TYPES[t.dtype]:
                raise ManifestError(f"{graph}: {kind} {t.name!r} is {arg.type}; the manifest "
                                    f"says {t.dtype}")
            _check_shape(f"{graph}: {kind} {t.name!r}", t.shape,
                         [d if isinstance(d, int) else None for d in arg.shape], sizes)


def _check_shape(where: str, expected: tuple[Dim, ...], shape: list[int | None],
                 sizes: Sizes) -> None:
    if len(shape) != len(expected):
        raise ManifestError(f"{where} has rank {len(shape)}; the manifest says "
                            f"{len(expected)} ({list(expected)})")
    for axis, (dim, size) in enumerate(zip(expected, shape, strict=True)):
        sizes.check(dim, size, f"{where} axis {axis}")


def _probe(manifest: Manifest, version_dir: Path, contracts: dict[str, Contract],
           sessions: Mapping[str, Any], known: dict[str, int]) -> None:
    """Run every graph once on zeros (sequence models: the encoder, then one step on what it
    gave) and compare what comes out with the contract."""
    sizes = Sizes(known, frozenset())
    batch = known[BATCH]
    tag = f"(probe run, batch {batch})"
    if MODEL in contracts:
        feeds = {t.name: _zeros(t, known) for t in contracts[MODEL].inputs}
        _run(manifest.graphs[MODEL], contracts[MODEL], sessions[MODEL], feeds, sizes, tag)
        return
    tok = manifest.tokenizer
    assert tok is not None  # Manifest.from_dict: every sequence model has one
    if isinstance(tok, SentencePieceTokenizer):
        # the largest source id too: an embedding smaller than the tokenizer fails here
        top = _sentencepiece(version_dir, tok.source_model).get_piece_size()
        feeds = {SRC_IDS: np.full((batch, PROBE_SOURCE_LENGTH), top - 1, np.int64),
                 SRC_LENGTHS: np.full(batch, PROBE_SOURCE_LENGTH, np.int64)}
    else:
        feeds = {t.name: _zeros(t, known) for t in contracts[ENCODER].inputs}
    encoded = _run(manifest.graphs[ENCODER], contracts[ENCODER], sessions[ENCODER], feeds,
                   sizes, tag)
    memory = encoded[MEMORY]
    step_feeds = {PREV_IDS: np.full(batch, tok.bos_id, np.int64),
                  STATE: encoded[STATE], MEMORY: memory,
                  SRC_MASK: np.ones(memory.shape[:2], bool)}
    _run(manifest.graphs[DECODER_STEP], contracts[DECODER_STEP], sessions[DECODER_STEP],
         step_feeds, sizes, tag)


def _run(graph: str, contract: Contract, session: Any, feeds: dict[str, np.ndarray],
         sizes: Sizes, tag: str) -> dict[str, np.ndarray]:
    names = [t.name for t in contract.outputs]
    try:
        results = dict(zip(names, session.run(names, feeds), strict=True))
    except Exception as e:  # onnxruntime's errors share no base class
        raise ManifestError(f"{graph}: fails {tag}: {e}") from e
    for t in contract.outputs:
        array = results[t.name]
        if np.dtype(array.dtype).name != t.dtype:
            raise ManifestError(f"{graph}: output {t.name!r} comes out {array.dtype} {tag}; "
                                f"the manifest says {t.dtype}")
        _check_shape(f"{graph}: output {t.name!r} {tag}", t.shape, list(array.shape), sizes)
    return results


def _zeros(t: Tensor, known: dict[str, int]) -> np.ndarray:
    shape = [d if isinstance(d, int) else known.get(d, 1) for d in t.shape]
    return np.zeros(shape, np.dtype(t.dtype))
