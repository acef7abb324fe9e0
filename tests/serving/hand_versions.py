"""Version folders written by hand, as a careless operator or a hostile publisher would, and
waiting for a server to react to them."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path


def wait_for(condition, timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def file_entry(data: bytes) -> dict:
    """What a manifest's `files` says of a file holding data."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def publish_by_hand(model_dir: Path, version: int, files: dict[str, bytes],
                    manifest: dict) -> Path:
    """Write a version folder aside and rename it into place, as a publisher would, but with
    whatever content (and sha256s) the test wants."""
    staging = model_dir / f".by-hand-{version}"
    staging.mkdir()
    for name, data in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(data)
    (staging / "manifest.json").write_text(json.dumps(manifest))
    os.rename(staging, model_dir / str(version))
    return model_dir / str(version)


def copy_version(version_dir: Path, version: int, **manifest_changes) -> tuple[dict, dict]:
    """The files and manifest of a published version, as the start of a new one."""
    manifest = json.loads((version_dir / "manifest.json").read_text())
    files = {rel: (version_dir / rel).read_bytes() for rel in manifest["files"]}
    return files, {**manifest, "version": version, **manifest_changes}
