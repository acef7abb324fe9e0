from __future__ import annotations

import hashlib
import os
from pathlib import Path

from serving.repository.errors import ManifestError
from serving.repository.safe_files import open_regular


def sha256_file(path: Path, limit: int | None = None, chunk_size: int = 1 << 20) -> str:
    """sha256 of a regular file; with limit, refused once more than limit bytes come (a file
    that grew since its size was checked is not hashed to its end)."""
    digest = hashlib.sha256()
    read = 0
    with os.fdopen(open_regular(path), "rb") as f:
        while chunk := f.read(chunk_size):
            read += len(chunk)
            if limit is not None and read > limit:
                raise ManifestError(f"{path} holds more than the {limit} bytes listed")
            digest.update(chunk)
    return digest.hexdigest()
