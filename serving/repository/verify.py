from __future__ import annotations

import os
from pathlib import Path

from serving.repository.errors import ManifestError
from serving.repository.hashing import sha256_file
from serving.repository.layout import MANIFEST_FILE
from serving.repository.manifest import Manifest
from serving.repository.safe_files import check_entries, inside


def verify_version(version_dir: Path) -> Manifest:
    """Read a version's manifest and check every file it lists: inside the version, a regular
    file of the listed size, with the listed sha256. Nothing is read that could block."""
    manifest = Manifest.read(version_dir / MANIFEST_FILE)
    check_entries(version_dir)
    for key, rel in manifest.named_files().items():
        if rel not in manifest.files:
            raise ManifestError(f"{version_dir}: {key} {rel!r} is not listed in files with a "
                                "sha256")
    for rel, meta in manifest.files.items():
        path = inside(version_dir, rel)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError as e:
            raise ManifestError(f"{version_dir}: file {rel} listed in the manifest is "
                                "missing") from e
        if size != meta["bytes"]:
            raise ManifestError(f"{version_dir}: {rel} is {size} bytes, manifest says "
                                f"{meta['bytes']}")
        actual = sha256_file(path, limit=meta["bytes"])
        if actual != meta["sha256"]:
            raise ManifestError(f"{version_dir}: sha256 of {rel} is {actual}, "
                                f"manifest says {meta['sha256']}")
    return manifest
