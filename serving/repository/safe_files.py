"""Reading a version's files without ever blocking and without leaving the version.

A repository is written by people and scripts, not only by VersionWriter. A FIFO where a file
should be blocks open() until a writer comes, and with it the scan of every model; a device
can be endless; a symlink or '..' lets a version read, unhashed, whatever lies outside it. So
the server opens regular files only, never waits to open one, reads no more than the manifest
says is there, and takes a path only once it resolves inside its version folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from serving.repository.errors import ManifestError

MAX_MANIFEST_BYTES = 16 << 20  # a manifest with a long training history is ~100 KB


def path_problem(rel: str) -> str | None:
    """Why a path a manifest names cannot be a file of its version, or None when it can."""
    if not rel or "\0" in rel:
        return "an empty or NUL-carrying path"
    path = PurePosixPath(rel)
    if path.is_absolute():
        return "an absolute path"
    if ".." in path.parts:
        return "a path with '..'"
    return None


def inside(version_dir: Path, rel: str) -> Path:
    """version_dir / rel, once it is sure that the path and any symlink on it stay inside."""
    problem = path_problem(rel)
    if problem is not None:
        raise ManifestError(f"{version_dir}: file {rel!r} points outside the version "
                            f"({problem})")
    path = version_dir / rel
    if not path.resolve().is_relative_to(version_dir.resolve()):
        raise ManifestError(f"{version_dir}: file {rel!r} points outside the version "
                            "(a symlink out)")
    return path


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: Path) -> int:
    """A read-only descriptor of a regular file; anything else is refused before it can block.

    stat() first, so a FIFO or device is never even opened; O_NONBLOCK and fstat() after, for
    one swapped in between."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as e:
        raise ManifestError(f"{path} does not exist") from e
    if not stat.S_ISREG(mode):
        raise ManifestError(f"{path} is {kind_of(mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ManifestError(f"{path} is {kind_of(mode)}, not a regular file")
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ManifestError(f"{path} is larger than {limit} bytes")
    return data


def check_entries(version_dir: Path) -> None:
    """Refuse a version holding anything but regular files, folders and links that stay
    inside: nothing the server reads may be a FIFO, device or socket, or lead elsewhere."""
    root = version_dir.resolve()
    for folder, dirs, files in os.walk(version_dir, onerror=_raise):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(version_dir)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                if not path.resolve().is_relative_to(root):
                    raise ManifestError(f"{version_dir}: {rel} is a symlink out of the version")
                mode = _mode_or_zero(path)
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ManifestError(f"{version_dir}: {rel} is {kind_of(mode)}; a version holds "
                                    "regular files only")


def identity(version_dir: Path) -> tuple[object, ...]:
    """Size, mtime and inode of the folder and of everything in it: equal as long as nothing
    in the version changed, so a refused version is tried again only once it is repaired."""
    try:
        st = version_dir.stat()
    except OSError:
        return ()
    parts: list[object] = [st.st_ino, st.st_mtime_ns]
    for folder, dirs, files in os.walk(version_dir):
        dirs.sort()
        for name in sorted(dirs + files):
            try:
                st = os.stat(Path(folder) / name)  # a link's target: what a reader gets
            except OSError:
                parts.append(name)
                continue
            parts += [name, st.st_ino, st.st_size, st.st_mtime_ns]
    return tuple(parts)


def _mode_or_zero(path: Path) -> int:
    try:
        return path.stat().st_mode
    except OSError:  # a dangling link, a loop
        return 0


def _raise(error: OSError) -> None:
    raise ManifestError(f"cannot list {error.filename}: {error.strerror}") from error
