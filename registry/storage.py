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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from registry.errors import InsufficientStorage

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX64 = re.compile(r"[0-9a-f]{64}")


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


STAGING_PREFIX = "upload-"
STAGING_SUFFIX = ".part"


class StagedFile:
    """A temporary file being written and hashed; moved into the store or deleted.

    The file holds an exclusive `flock` on itself from creation until it is committed or
    discarded, so that a clean-up in another process sharing ASSAY_HOME (see
    `ArtifactStore.remove_stale_staging`) can tell a live upload from one whose process died:
    the kernel drops the lock when the process that held it ends, however it ends.
    """

    def __init__(self, directory: Path) -> None:
        with reporting_full_disk():
            while True:
                fd, name = tempfile.mkstemp(
                    prefix=STAGING_PREFIX, suffix=STAGING_SUFFIX, dir=directory
                )
                fcntl.flock(fd, fcntl.LOCK_EX)
                # Another process's clean-up may have removed the file between its creation and
                # the lock; writing into an unlinked file would lose the upload at commit.
                if os.fstat(fd).st_nlink > 0:
                    break
                os.close(fd)
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
        """Flushes and fsyncs the file (it stays open and locked); gives back its digest."""
        with reporting_full_disk():
            self._file.flush()
            os.fsync(self._file.fileno())
        return format_digest(self._hash.hexdigest())

    def release(self) -> None:
        """Closes the file, which drops its lock; the path is no longer this object's."""
        if not self._file.closed:
            self._file.close()

    def discard(self) -> None:
        # Unlink while still holding the lock, so no clean-up can meet a half-removed file.
        self.path.unlink(missing_ok=True)
        self.release()


@dataclass(frozen=True)
class RemovedStaging:
    """A staging file that no live process held, removed by the clean-up."""

    name: str
    size: int


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
                staged.release()
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

    def remove_stale_staging(self) -> list[RemovedStaging]:
        """Removes the `.part` files in tmp whose writer is gone; gives back what it removed.

        A file is stale when its lock can be taken: a live `StagedFile`, in this process or
        another one sharing ASSAY_HOME, holds its lock until it is committed or discarded.
        """
        removed: list[RemovedStaging] = []
        if not self.tmp_dir.is_dir():
            return removed
        for path in sorted(self.tmp_dir.glob(f"{STAGING_PREFIX}*{STAGING_SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:  # committed, discarded or not a regular file meanwhile
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live upload
                held = os.fstat(fd)
                try:
                    current = os.stat(path, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                # The name must still be the file that was locked (not renamed or replaced).
                if (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
                    continue
                path.unlink()
                removed.append(RemovedStaging(name=path.name, size=held.st_size))
            finally:
                os.close(fd)
        return removed

    def blobs(self) -> tuple[set[str], list[Path]]:
        """Gives back the digests of the stored files, and any file the store did not name."""
        digests: set[str] = set()
        unexpected: list[Path] = []
        if not self.root.is_dir():
            return digests, unexpected
        for path in sorted(self.root.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                continue
            relative = path.relative_to(self.root).parts
            name = relative[-1]
            if (
                len(relative) == 3
                and relative[0] == "sha256"
                and _HEX64.fullmatch(name)
                and relative[1] == name[:2]
                and path.is_file()
                and not path.is_symlink()
            ):
                digests.add(format_digest(name))
            else:
                unexpected.append(path)
        return digests, unexpected

    def quarantine(self, digest: str, directory: Path) -> Path:
        """Moves a stored file out of the store into `directory` (owner-only); gives its path."""
        source = self.path_for(digest)
        private_dir(directory)
        hexdigest = digest.removeprefix("sha256:")
        target = directory / hexdigest
        copy = 0
        while target.exists():
            copy += 1
            target = directory / f"{hexdigest}.{copy}"
        os.replace(source, target)
        return target

    def restore(self, digest: str, quarantined: Path) -> None:
        """Moves a file that `quarantine` moved back into the store."""
        os.replace(quarantined, self.path_for(digest))
