"""Content-addressed artifact store on local disk: files are named by their SHA-256 only."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from registry.errors import InsufficientStorage

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


def format_digest(hexdigest: str) -> str:
    return f"sha256:{hexdigest}"


def check_digest(digest: str) -> str:
    """Gives back the digest if it is `sha256:<64 lowercase hex>`, else raises ValueError."""
    if not DIGEST_PATTERN.fullmatch(digest):
        raise ValueError(f"a digest is written sha256:<64 lowercase hex digits>, not {digest!r}")
    return digest


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextmanager
def reporting_full_disk() -> Iterator[None]:
    """Turns a full disk or quota (ENOSPC, EDQUOT) into InsufficientStorage (507)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise InsufficientStorage(
                "The server's storage for uploads and artifacts is full "
                f"({os.strerror(exc.errno or 0)}); nothing was kept. Ask the administrator to "
                "free space, then send it again."
            ) from exc
        raise


class StagedFile:
    """A temporary file being written and hashed; moved into the store or deleted."""

    def __init__(self, directory: Path) -> None:
        with reporting_full_disk():
            fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=directory)
        self.path = Path(name)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        with reporting_full_disk():
            self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def finish(self) -> str:
        """Flushes and fsyncs the file; gives back its digest."""
        with reporting_full_disk():
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        return format_digest(self._hash.hexdigest())

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
ARTIFACT_FILE = 0o400
"""Modes of what Assay writes: no other local user may read a database, an artifact or a key."""


def private_dir(path: Path) -> Path:
    """Return `path`, created (with its parents) or tightened to owner-only access (0700)."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Return `path`, created empty if missing, readable and writable by its owner only."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    os.chmod(path, PRIVATE_FILE)
    return path


class ArtifactStore:
    """Files under `root/sha256/<2 hex>/<64 hex>`; keys never come from client-supplied names."""

    def __init__(self, root: Path, tmp_dir: Path, *, lock_path: Path | None = None) -> None:
        self.root = root
        self.tmp_dir = tmp_dir
        self.lock_path = lock_path or tmp_dir.parent / "store.lock"
        private_dir(self.lock_path.parent)
        private_file(self.lock_path)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Holds the store's lock (across threads and processes on this host).

        Placing a file, recording the version that references it, and removing a file that no
        version references all happen under it, so one request can never remove a file that a
        concurrent request with the same bytes is about to reference.
        """
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def stage(self) -> StagedFile:
        with reporting_full_disk():
            private_dir(self.tmp_dir)
        return StagedFile(self.tmp_dir)

    def path_for(self, digest: str) -> Path:
        hexdigest = check_digest(digest).removeprefix("sha256:")
        return self.root / "sha256" / hexdigest[:2] / hexdigest

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def commit(self, staged: StagedFile, digest: str) -> Path:
        """Moves a finished staged file into place under its digest (atomic rename).

        On any failure (a full disk is InsufficientStorage) the staged file is deleted.
        """
        target = self.path_for(digest)
        placed = False
        try:
            with reporting_full_disk():
                for directory in (self.root, target.parent.parent, target.parent):
                    private_dir(directory)
                if target.exists():
                    staged.discard()
                    return target
                os.chmod(staged.path, ARTIFACT_FILE)
                os.replace(staged.path, target)
                placed = True
                dir_fd = os.open(target.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except BaseException:
            staged.discard()
            if placed:
                target.unlink(missing_ok=True)
            raise
        return target

    def remove(self, digest: str) -> None:
        self.path_for(digest).unlink(missing_ok=True)
