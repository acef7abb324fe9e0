"""The one error of the repository format: a manifest or version folder that must not be
served (the registry reports its message as the version's reason)."""

from __future__ import annotations


class ManifestError(ValueError):
    """A manifest or version folder that must not be served."""
