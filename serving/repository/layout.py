"""Where things live inside a model repository."""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST_FILE = "manifest.json"
TRITON_CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def is_valid_model_name(name: str) -> bool:
    return bool(MODEL_NAME_PATTERN.match(name))


def model_names(repository: Path) -> list[str]:
    """Model folders; hidden ones (staging areas) and stray files are not models."""
    if not repository.is_dir():
        return []
    return sorted(
        p.name for p in repository.iterdir() if p.is_dir() and is_valid_model_name(p.name)
    )


def version_numbers(model_dir: Path) -> list[int]:
    """Published versions of one model, ascending. Only positive integer folder names count."""
    if not model_dir.is_dir():
        return []
    versions = []
    for p in model_dir.iterdir():
        if p.is_dir() and p.name.isascii() and p.name.isdigit() and not p.name.startswith("0"):
            versions.append(int(p.name))
    return sorted(versions)
