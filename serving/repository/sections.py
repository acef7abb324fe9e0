"""The typed sections of manifest.json: tokenizer, decoding, limits, grid, preprocessing, and the
calibration decision.

Every default is written here, once: a manifest that lacks a key reads as if it held the
default, for every reader, and versions published before a key existed keep loading. A wrong
type or a missing required key is a ManifestError naming the key, when the version loads
rather than on a call. Keys a section does not know (descriptions such as the tokenizer's
"detokenize") are kept in `extra` and travel through unchanged.

A writer builds a section with keywords (`TranslationDecoding(default_beam_size=4)`) and puts
it, or its `to_dict()`, in the manifest it commits. A section also reads as the JSON object
it stands for (`grid["rows"]`, `dict(grid)`), defaults filled in, for code that indexes one.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

from serving.repository.errors import ManifestError

S = TypeVar("S", bound="Section")
IMAGE_COLORS = ("grayscale", "rgb")


class Section(Mapping[str, Any]):
    """One JSON object of the manifest as a frozen dataclass (see the module's docstring)."""

    KEY: ClassVar[str] = ""  # where it sits in manifest.json
    extra: dict[str, Any]

    @classmethod
    def from_dict(cls: type[S], data: Any) -> S:
        """The section a manifest holds (a JSON object, or a section a writer built)."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"{cls.KEY} must be a JSON object")
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            if f.name in data:
                values[f.name] = _coerce(data[f.name], hints[f.name], f"{cls.KEY}.{f.name}")
            elif f.default is MISSING and f.default_factory is MISSING:
                raise ManifestError(f"{cls.KEY} lacks {f.name!r}")
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        section = cls(**values, extra={k: v for k, v in data.items() if k not in known})
        section.check()
        return section

    def check(self) -> None:
        """Constraints on the values beyond their types."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every field (unset optional ones left out), then the extra keys."""
        out = {f.name: getattr(self, f.name) for f in fields(self)  # type: ignore[arg-type]
               if f.name != "extra" and getattr(self, f.name) is not None}
        return {**out, **self.extra}

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def section(cls: type[S], data: Any) -> S:
    return data if isinstance(data, cls) else cls.from_dict(data)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """A JSON value as the field's type: ints stay exact, a bool is no number."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(hint):
            return None
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return _coerce(value, inner, where)
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ManifestError(f"{where} must be a list, not {_kind(value)}")
        (item,) = get_args(hint)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ManifestError(f"{where} must be a JSON object, not {_kind(value)}")
        return dict(value)
    if hint in _SCALARS:
        what, fits = _SCALARS[hint]
        if not fits(value):
            raise ManifestError(f"{where} must be {what}, not {_kind(value)}")
        return float(value) if hint is float else value
    raise TypeError(f"{where}: no coercion to {hint}")  # a field type this module lacks


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# JSON scalars by field type: what the message calls them, and which values fit
_SCALARS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: _number(v) and isinstance(v, int)),
    float: ("a finite number", lambda v: _number(v) and math.isfinite(v)),
    str: ("a string", lambda v: isinstance(v, str)),
}


def _kind(value: Any) -> str:
    return repr(value) if isinstance(value, float) else type(value).__name__


def _at_least(where: str, value: int | float | None, low: int | float) -> None:
    if value is not None and value < low:
        raise ManifestError(f"{where} must be at least {low}, not {value}")




@dataclass(frozen=True, eq=False, kw_only=True)
class SentencePieceTokenizer(Section):
    """A translator's SentencePiece models and special ids. Source ids are
    [bos_id]? + source_model.encode(text) + [eos_id]?; target ids decode with target_file."""

    KEY = "tokenizer"
    TYPE: ClassVar[str] = "sentencepiece"
    type: str = TYPE
    source_model: str
    target_model: str | None = None  # None: one model for both languages
    pad_id: int
    bos_id: int
    eos_id: int
    unk_id: int | None = None
    add_bos_to_source: bool = False
    add_eos_to_source: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def target_file(self) -> str:
        return self.target_model or self.source_model


@dataclass(frozen=True, eq=False, kw_only=True)
class VocabularyTokenizer(Section):
    """A captioner's word list (one word per line, the line number its id)."""

    KEY = "tokenizer"
    TYPE: ClassVar[str] = "vocabulary"
    type: str = TYPE
    vocab_file: str
    bos_id: int
    eos_id: int
    pad_id: int | None = None
    unk_id: int | None = None
    join: str = " "  # between the words of a caption
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.type != self.TYPE:
            raise ManifestError(f"a caption model needs a {self.TYPE} tokenizer, not "
                                f"{self.type!r}")


Tokenizer = SentencePieceTokenizer | VocabularyTokenizer


@dataclass(frozen=True, eq=False, kw_only=True)
class Decoding(Section):
    """The search a call gets unless it asks for another."""

    KEY = "decoding"
    default_beam_size: int = 1  # 1: greedy search
    length_penalty: float = 0.0  # GNMT's alpha; 0 ranks by raw log-probability
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        _at_least("decoding.default_beam_size", self.default_beam_size, 1)


@dataclass(frozen=True, eq=False, kw_only=True)
class TranslationDecoding(Decoding):
    """Target pieces a sentence may get: ceil(max_length_ratio * source pieces + offset)."""

    max_length_ratio: float = 2.0
    max_length_offset: int = 10

    def check(self) -> None:
        super().check()
        _at_least("decoding.max_length_ratio", self.max_length_ratio, 0)
        _at_least("decoding.max_length_offset", self.max_length_offset, 0)

    def max_target_length(self, source_pieces: int) -> int:
        """source_pieces: the source's ids as the encoder sees them (EOS included)."""
        return math.ceil(self.max_length_ratio * source_pieces + self.max_length_offset)


@dataclass(frozen=True, eq=False, kw_only=True)
class CaptionDecoding(Decoding):
    max_length: int = 20  # words per caption; a call may ask for fewer, never more

    def check(self) -> None:
        super().check()
        _at_least("decoding.max_length", self.max_length, 1)


@dataclass(frozen=True, eq=False, kw_only=True)
class TranslationLimits(Section):
    """What a translator refuses before any work."""

    KEY = "limits"
    max_source_pieces: int = 200  # pieces of one source sentence (BOS/EOS included)
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        _at_least("limits.max_source_pieces", self.max_source_pieces, 1)


@dataclass(frozen=True, eq=False, kw_only=True)
class Grid(Section):
    """A captioner's memory: rows x cols image regions, row-major, each cell_height x
    cell_width pixels of the input."""

    KEY = "grid"
    rows: int
    cols: int
    cell_height: int | None = None
    cell_width: int | None = None
    order: str | None = None
    feature_dim: int | None = None
    state_dim: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        _at_least("grid.rows", self.rows, 1)
        _at_least("grid.cols", self.cols, 1)

    @property
    def cells(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True, eq=False, kw_only=True)
class ImagePreprocessing(Section):
    """What the graph takes: float32 [N, channels, height, width] raw values in input_range;
    normalisation (if any) happens inside the graph."""

    KEY = "preprocessing"
    kind: str = "image"
    channels: int
    height: int
    width: int
    color: str = "grayscale"
    layout: str = "NCHW"
    input_range: list[int] = field(default_factory=lambda: [0, 255])
    resize: str | None = None  # how the server fits other sizes ("bilinear")
    background: str | None = None  # "black": light digits on dark, as MNIST
    normalization: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        for name in ("channels", "height", "width"):
            _at_least(f"preprocessing.{name}", getattr(self, name), 1)
        if self.color not in IMAGE_COLORS:
            raise ManifestError(f"preprocessing.color must be one of {', '.join(IMAGE_COLORS)}, "
                                f"not {self.color!r}")

    @property
    def chw(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width


@dataclass(frozen=True, eq=False, kw_only=True)
class Calibration(Section):
    """Which temperature the served probabilities use, and why: scaling is kept only when it
    lowers both the validation NLL and the validation ECE."""

    KEY = "calibration"
    method: str = "temperature scaling"
    temperature: float = 1.0  # the one inside the served graph
    kept: bool = False
    fitted_temperature: float | None = None
    validation_nll_before: float | None = None
    validation_nll_after: float | None = None
    validation_ece_before: float | None = None
    validation_ece_after: float | None = None
    ece_bins: int | None = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.temperature <= 0:
            raise ManifestError(f"calibration.temperature must be positive, not "
                                f"{self.temperature}")
