"""Atomic publication of a model version.

Files are written into a hidden staging folder beside the versions, the manifest is completed
with sha256s and verified, and only then is the folder renamed to the next version number.
rename(2) is atomic, so a reader sees either no version or a complete one; a crash or an
exception while staging leaves only a hidden folder that readers ignore and the next writer
cleans up.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from serving.repository.hashing import sha256_file
from serving.repository.layout import (
    LABELS_FILE,
    MANIFEST_FILE,
    TRITON_CONFIG_FILE,
    is_valid_model_name,
    version_numbers,
)
from serving.repository.manifest import Manifest, ManifestError
from serving.repository.triton_config import render_triton_config
from serving.repository.verify import verify_version

STAGING_PREFIX = ".staging-"
STALE_STAGING_SECONDS = 24 * 3600


class VersionWriter:
    """with VersionWriter(repo, "mnist") as w: write files into w.path; w.commit(manifest)."""

    def __init__(self, repository: Path | str, name: str) -> None:
        if not is_valid_model_name(name):
            raise ValueError(f"invalid model name {name!r}: use letters, digits, '_', '-', '.'")
        self.repository = Path(repository)
        self.name = name
        self.model_dir = self.repository / name
        self.path: Path = Path()
        self.version: int | None = None
        self.final_path: Path | None = None

    def __enter__(self) -> VersionWriter:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_staging()
        self.path = self.model_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        self.path.mkdir()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self, manifest: dict[str, Any]) -> tuple[int, Path]:
        """Hash the staged files, write and verify the manifest, publish as the next version."""
        files = {}
        for p in sorted(self.path.rglob("*")):
            if p.is_file() and p.name != MANIFEST_FILE:
                rel = p.relative_to(self.path).as_posix()
                files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        data = dict(manifest)
        data["name"] = self.name
        data["files"] = files
        data.setdefault("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
        for attempt in range(100):
            version = (version_numbers(self.model_dir) or [0])[-1] + 1
            data["version"] = version
            parsed = Manifest.from_dict(data)
            _write_atomically(self.path / MANIFEST_FILE, parsed.to_json())
            verify_version(self.path)
            target = self.model_dir / str(version)
            try:
                os.rename(self.path, target)
            except OSError as e:
                # another writer took this number between our listing and the rename
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and attempt < 99:
                    continue
                raise
            self.version, self.final_path = version, target
            self._write_model_config(parsed)
            return version, target
        raise ManifestError(f"could not find a free version number for {self.name}")

    def _write_model_config(self, manifest: Manifest) -> None:
        config = render_triton_config(manifest)
        if config is not None:
            _write_atomically(self.model_dir / TRITON_CONFIG_FILE, config)
            # Triton resolves label_filename against the model folder
            _write_atomically(self.model_dir / LABELS_FILE, "\n".join(manifest.labels) + "\n")

    def _remove_stale_staging(self) -> None:
        now = time.time()
        for p in self.model_dir.glob(f"{STAGING_PREFIX}*"):
            try:
                if now - p.stat().st_mtime > STALE_STAGING_SECONDS:
                    shutil.rmtree(p, ignore_errors=True)
            except FileNotFoundError:
                pass


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes 0600 files; a server running as another user must read them
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

