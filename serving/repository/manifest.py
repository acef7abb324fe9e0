"""manifest.json: everything the server needs to know about one model version.

The server never imports training code; whatever it must know (task, tensors, labels,
preprocessing, tokenizer files, metrics, parity) travels in this file.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from serving.repository.errors import ManifestError
from serving.repository.graph_io import PROBABILITIES, SEQUENCE_ROLES
from serving.repository.safe_files import MAX_MANIFEST_BYTES, path_problem, read_regular
from serving.repository.sections import (
    Calibration,
    CaptionDecoding,
    Decoding,
    Grid,
    ImagePreprocessing,
    Section,
    SentencePieceTokenizer,
    Tokenizer,
    TranslationDecoding,
    TranslationLimits,
    VocabularyTokenizer,
    section,
)

FORMAT_VERSION = 1
TASKS = ("classify", "tag", "translate", "caption")
IMAGE_TASKS, SEQUENCE_TASKS = ("classify", "tag", "caption"), ("translate", "caption")
DTYPES = ("float32", "float16", "uint8", "int32", "int64", "bool", "bytes")  # bytes: text/images
# tokenizer keys that name a file of the version (source_model, target_model, vocab_file)
TOKENIZER_FILE_SUFFIXES = ("_model", "_file")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: list[int]  # -1 marks a dynamic axis

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> TensorSpec:
        try:
            spec = cls(name=str(d["name"]), dtype=str(d["dtype"]),
                       shape=[int(s) for s in d["shape"]])
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{where}: tensor spec needs name, dtype and shape ({e})") from e
        if spec.dtype not in DTYPES:
            raise ManifestError(f"{where}: tensor {spec.name!r} has unknown dtype {spec.dtype!r}")
        if any(s < -1 or s == 0 for s in spec.shape):
            raise ManifestError(f"{where}: tensor {spec.name!r} has invalid shape {spec.shape}")
        return spec


@dataclass
class Manifest:
    name: str
    task: str
    graphs: dict[str, str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parity: dict[str, Any]
    metrics: dict[str, Any]
    version: int = 0
    labels: list[str] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)  # taggers: one decision per label
    preprocessing: ImagePreprocessing | None = None  # image tasks
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)
    tokenizer: Tokenizer | None = None  # sequence tasks: files and special ids
    decoding: Decoding | None = None  # sequence tasks: the default search
    limits: TranslationLimits | None = None  # translate
    grid: Grid | None = None  # caption: rows x cols of the memory
    calibration: Calibration | None = None  # classifiers: the temperature served, and why
    created_at: str = ""
    format: int = FORMAT_VERSION
    # keys this server does not interpret (e.g. quantization reports) travel through unchanged
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if not isinstance(d, dict):
            raise ManifestError("manifest must be a JSON object")
        missing = [k for k in ("name", "task", "graphs", "inputs", "outputs", "parity", "metrics")
                   if k not in d]
        if missing:
            raise ManifestError(f"manifest lacks required keys: {', '.join(missing)}")
        if d.get("format", FORMAT_VERSION) > FORMAT_VERSION:
            raise ManifestError(f"manifest format {d['format']} is newer than this server knows")
        sections = _sections(str(d["task"]), d)
        # a section the task has no use for (decoding of a classifier) travels unread
        unused = {key for key in SECTION_KEYS if key in d and sections[key] is None}
        m = cls(
            name=str(d["name"]),
            task=str(d["task"]),
            graphs={str(k): str(v) for k, v in dict(d["graphs"]).items()},
            inputs=[TensorSpec.from_dict(t, "inputs") for t in d["inputs"]],
            outputs=[TensorSpec.from_dict(t, "outputs") for t in d["outputs"]],
            parity=dict(d["parity"]),
            metrics=dict(d["metrics"]),
            version=int(d.get("version", 0)),
            labels=[str(x) for x in d.get("labels", [])],
            thresholds=[float(x) for x in d.get("thresholds", [])],
            files={str(k): dict(v) for k, v in dict(d.get("files", {})).items()},
            training=dict(d.get("training", {})),
            libraries={str(k): str(v) for k, v in dict(d.get("libraries", {})).items()},
            serving=dict(d.get("serving", {})),
            created_at=str(d.get("created_at", "")),
            format=int(d.get("format", FORMAT_VERSION)),
            **sections,
            extra={k: v for k, v in d.items()
                   if k not in cls.__dataclass_fields__ or k in unused},
        )
        m.validate()
        return m

    @classmethod
    def read(cls, path: Path) -> Manifest:
        raw = read_regular(path, MAX_MANIFEST_BYTES)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ManifestError(f"{path} is not valid JSON: {e}") from e
        return cls.from_dict(data)

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ManifestError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if not self.graphs:
            raise ManifestError("manifest names no ONNX graph")
        if not self.inputs or not self.outputs:
            raise ManifestError("manifest must declare inputs and outputs")
        diff = self.parity.get("max_abs_diff")
        if not isinstance(diff, int | float) or not math.isfinite(diff):
            raise ManifestError("parity.max_abs_diff must be a finite number")
        if self.task in SEQUENCE_TASKS and not set(SEQUENCE_ROLES) <= set(self.graphs):
            raise ManifestError(f"a {self.task} model needs encoder and decoder_step graphs")
        if self.task in ("classify", "tag") and not self.labels:
            raise ManifestError(f"a {self.task} model needs labels")
        if self.thresholds and (len(self.thresholds) != len(self.labels)
                                or not all(0 < t <= 1 for t in self.thresholds)):
            raise ManifestError("thresholds must give one value in (0, 1] per label")
        if self.task in ("classify", "tag"):
            width = self.output(PROBABILITIES).shape[-1]
            if width != -1 and width != len(self.labels):
                raise ManifestError(
                    f"probabilities has {width} columns but the manifest lists "
                    f"{len(self.labels)} labels")
        self._validate_files()

    def named_files(self) -> dict[str, str]:
        """Every file the server reads, by the manifest key that names it."""
        named = {f"graphs.{role}": rel for role, rel in self.graphs.items()}
        for key, value in (self.tokenizer or {}).items():
            if key.endswith(TOKENIZER_FILE_SUFFIXES) and isinstance(value, str):
                named[f"tokenizer.{key}"] = value
        return named

    def _validate_files(self) -> None:
        """Each listed file and each file the server reads has a path inside the version; each
        listed file has a sha256 and a size. (That every file read is listed, and where links
        lead, verify_version checks against the version folder.)"""
        for rel, meta in self.files.items():
            problem = path_problem(rel)
            if problem is not None:
                raise ManifestError(f"file {rel!r} points outside the version ({problem})")
            if not SHA256.match(str(meta.get("sha256", ""))):
                raise ManifestError(f"file {rel!r} has no sha256 (64 hex digits) in files")
            size = meta.get("bytes")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ManifestError(f"file {rel!r} has no size (bytes) in files")
        for key, rel in self.named_files().items():
            problem = path_problem(rel)
            if problem is not None:
                raise ManifestError(f"{key} {rel!r} points outside the version ({problem})")

    def output(self, name: str) -> TensorSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise ManifestError(f"manifest declares no output named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Section):
                data[f.name] = value.to_dict()
            elif f.name in ("inputs", "outputs"):
                data[f.name] = [asdict(t) for t in value]
            elif f.name != "extra" and value is not None:
                data[f.name] = value
        # a copy: whoever edits the dict must not edit this manifest
        return copy.deepcopy({**data, **self.extra})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"


SECTION_KEYS = ("tokenizer", "decoding", "limits", "grid", "preprocessing", "calibration")


def _sections(task: str, d: dict[str, Any]) -> dict[str, Section | None]:
    """The typed sections of a manifest, those its task reads: defaults where keys lack."""
    out: dict[str, Section | None] = dict.fromkeys(SECTION_KEYS)
    if task == "translate":
        tok = d.get("tokenizer") or {}
        if tok.get("type") != SentencePieceTokenizer.TYPE:
            raise ManifestError("a translate model needs a sentencepiece tokenizer")
        out["tokenizer"] = section(SentencePieceTokenizer, tok)
        out["decoding"] = section(TranslationDecoding, d.get("decoding", {}))
        out["limits"] = section(TranslationLimits, d.get("limits", {}))
    if task == "caption":
        grid = d.get("grid") or {}
        if not (grid.get("rows") and grid.get("cols")):
            raise ManifestError("a caption model needs grid rows and cols")
        out["grid"] = section(Grid, grid)
        out["tokenizer"] = section(VocabularyTokenizer, d.get("tokenizer") or {})
        out["decoding"] = section(CaptionDecoding, d.get("decoding", {}))
    if task in IMAGE_TASKS:
        if not d.get("preprocessing"):
            raise ManifestError(f"a {task} model needs preprocessing (channels, height, width "
                                "of its image input)")
        out["preprocessing"] = section(ImagePreprocessing, d["preprocessing"])
    if d.get("calibration") is not None:
        out["calibration"] = section(Calibration, d["calibration"])
    return out
