"""Where a run writes, claimed before the first epoch: the model repository and the checkpoint
folder.

Both are checked at the start, so a repository that is a file or read-only fails in a second
rather than after the whole training run. The checkpoint folder is locked for the run
(fcntl.flock on its .lock file): a second run given the same folder is refused as "in use"
instead of overwriting the first one's checkpoints under it. Whatever fails, nothing is left in
the repository: VersionWriter removes its staging folder, staged_version the folders around it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from serving.repository import VersionWriter
from training.distributed import world
from training.errors import OptionError

LOCK_FILE = ".lock"


def check_writable_folder(path: Path, option: str) -> None:
    """OptionError unless path is a folder this process can write in, or can be made one."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies inside {existing}, which is a file"
        raise OptionError(f"{option} {path}: {where}, not a folder")
    try:
        # a real write, not os.access: it also sees read-only mounts and ACLs
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-test-")
    except OSError as e:
        raise OptionError(f"{option} {path}: cannot write in {existing} ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def claimed_outputs(repository: Path, checkpoint_dir: Path) -> Iterator[None]:
    """For a whole run: the repository checked writable, the checkpoint folder locked.

    Under torchrun rank 0 alone writes checkpoints and publishes, so it alone claims them.
    """
    if not world().is_main:
        yield
        return
    check_writable_folder(repository, "--repository")
    with checkpoint_lock(checkpoint_dir):
        yield


@contextlib.contextmanager
def checkpoint_lock(folder: Path) -> Iterator[None]:
    """Create the folder if needed and hold its lock; a run that fails before writing any
    checkpoint removes what it created."""
    check_writable_folder(folder, "--checkpoint-dir")
    created = missing_folders(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_FILE
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OptionError(f"--checkpoint-dir {folder}: in use by another training run "
                              f"(it holds {lock_path}); wait for it to end, or give another "
                              "--checkpoint-dir or --name") from None
        try:
            yield
        finally:
            # the lock file stays beside the checkpoints, so its inode never changes under a
            # run that opened it; only a folder this run made and left empty goes again
            if created and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
                lock_path.unlink()
                remove_empty_folders(created)


@contextlib.contextmanager
def staged_version(repository: Path, name: str) -> Iterator[VersionWriter]:
    """VersionWriter that, should anything fail before the commit, also removes the model
    folder (and repository folders) it created: an empty model folder looks like a model
    that lost its versions."""
    created = missing_folders(Path(repository) / name)
    try:
        with VersionWriter(repository, name) as writer:
            yield writer
    except BaseException:
        remove_empty_folders(created)
        raise


def missing_folders(path: Path) -> list[Path]:
    """path and those of its parents that do not exist yet, deepest first."""
    return [p for p in (path, *path.parents) if not p.exists()]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove each folder, deepest first, while they are empty (another writer may have
    started using one meanwhile: that one and its parents stay)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
