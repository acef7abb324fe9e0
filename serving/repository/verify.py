from __future__ import annotations

from pathlib import Path

from serving.repository.hashing import sha256_file
from serving.repository.layout import MANIFEST_FILE
from serving.repository.manifest import Manifest, ManifestError


def verify_version(version_dir: Path) -> Manifest:
    """Read a version's manifest and check every file it lists against its sha256."""
    manifest = Manifest.read(version_dir / MANIFEST_FILE)
    for graph in manifest.graphs.values():
        if graph not in manifest.files:
            raise ManifestError(f"{version_dir}: graph {graph} is not listed in files")
    for rel, meta in manifest.files.items():
        path = version_dir / rel
        if not path.resolve().is_relative_to(version_dir.resolve()):
            raise ManifestError(f"{version_dir}: file {rel!r} points outside the version")
        if not path.is_file():
            raise ManifestError(f"{version_dir}: file {rel} listed in the manifest is missing")
        actual = sha256_file(path)
        if actual != meta.get("sha256"):
            raise ManifestError(f"{version_dir}: sha256 of {rel} is {actual}, "
                                f"manifest says {meta.get('sha256')}")
    return manifest
