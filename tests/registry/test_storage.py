"""Unit tests of the content-addressed artifact store (`registry.storage`)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from registry.storage import ArtifactStore, StagedFile, check_digest, format_digest

PAYLOAD = b"an artifact's bytes\x00\x01\x02" * 100
DIGEST = format_digest(hashlib.sha256(PAYLOAD).hexdigest())


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts", tmp_path / "tmp")


def _staged(store: ArtifactStore, data: bytes = PAYLOAD) -> tuple[StagedFile, str]:
    staged = store.stage()
    staged.write(data[: len(data) // 2])
    staged.write(data[len(data) // 2 :])
    return staged, staged.finish()


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_check_digest_accepts_a_lowercase_sha256() -> None:
    assert check_digest(DIGEST) == DIGEST


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../..",
        "sha256:../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha512:" + "a" * 64,
        "a" * 64,
        "sha256:" + "a" * 62 + "/x",
        "sha256:" + "g" * 64,
        "sha256:" + "a" * 64 + "\n",
        "sha256:" + "a" * 64 + "\x00",
        " sha256:" + "a" * 64,
        "",
    ],
)
def test_check_digest_refuses_anything_but_sha256_and_64_lowercase_hex(digest: str) -> None:
    with pytest.raises(ValueError, match="sha256:<64 lowercase hex"):
        check_digest(digest)


@pytest.mark.parametrize("digest", ["sha256:../..", "sha256:" + "A" * 64, "sha256:abc"])
def test_path_for_refuses_malformed_digests(store: ArtifactStore, digest: str) -> None:
    with pytest.raises(ValueError):
        store.path_for(digest)


def test_path_for_is_inside_the_root_and_depends_only_on_the_digest(
    store: ArtifactStore,
) -> None:
    hexdigest = DIGEST.removeprefix("sha256:")
    path = store.path_for(DIGEST)
    assert path == store.root / "sha256" / hexdigest[:2] / hexdigest
    assert path.resolve().is_relative_to(store.root.resolve())


def test_staged_file_digest_is_the_sha256_of_what_was_written(store: ArtifactStore) -> None:
    staged, digest = _staged(store)
    assert digest == DIGEST
    assert staged.size == len(PAYLOAD)
    assert staged.path.parent == store.tmp_dir
    assert staged.path.read_bytes() == PAYLOAD


def test_commit_moves_the_file_under_its_digest_and_leaves_no_temporary(
    store: ArtifactStore,
) -> None:
    staged, digest = _staged(store)
    target = store.commit(staged, digest)
    assert target == store.path_for(digest)
    assert target.read_bytes() == PAYLOAD
    assert store.exists(digest)
    assert _files_under(store.tmp_dir) == []
    assert _files_under(store.root) == [target]


def test_committed_files_are_read_only(store: ArtifactStore) -> None:
    staged, digest = _staged(store)
    target = store.commit(staged, digest)
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0
    if os.geteuid() != 0:  # root ignores permission bits
        with pytest.raises(PermissionError):
            target.open("ab")


def test_commit_of_the_same_digest_twice_keeps_one_file_and_drops_the_second_staging(
    store: ArtifactStore,
) -> None:
    first, digest = _staged(store)
    target = store.commit(first, digest)
    inode = target.stat().st_ino
    second, second_digest = _staged(store)
    assert second_digest == digest
    assert store.commit(second, digest) == target
    assert target.stat().st_ino == inode
    assert target.read_bytes() == PAYLOAD
    assert not second.path.exists()
    assert _files_under(store.tmp_dir) == []
    assert _files_under(store.root) == [target]


def test_commit_replaces_atomically_by_rename(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The target only ever appears through one os.replace of the finished temporary file, so a
    # reader never sees a half-written artifact under its digest.
    staged, digest = _staged(store)
    calls: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src: str | Path, dst: str | Path) -> None:
        assert not Path(dst).exists()
        assert Path(src).read_bytes() == PAYLOAD
        calls.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    target = store.commit(staged, digest)
    assert calls == [(str(staged.path), str(target))]


def test_discard_removes_the_staged_file(store: ArtifactStore) -> None:
    staged = store.stage()
    staged.write(b"partial")
    staged.discard()
    assert not staged.path.exists()
    assert _files_under(store.tmp_dir) == []


def test_discard_after_finish_removes_the_staged_file(store: ArtifactStore) -> None:
    staged, _ = _staged(store)
    staged.discard()
    assert _files_under(store.tmp_dir) == []


def test_remove_deletes_the_committed_file_and_tolerates_a_missing_one(
    store: ArtifactStore,
) -> None:
    staged, digest = _staged(store)
    store.commit(staged, digest)
    store.remove(digest)
    assert not store.exists(digest)
    store.remove(digest)  # already gone: no error


def test_remove_refuses_a_malformed_digest(store: ArtifactStore, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    with pytest.raises(ValueError):
        store.remove("sha256:../../victim")
    assert victim.read_bytes() == b"keep me"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_what_assay_writes_is_owner_only(tmp_path: Path) -> None:
    # Issue 8, item 8: assay.db was 0644, artifacts 0444 and ASSAY_HOME 0755.
    from registry.db import make_engine
    from registry.settings import Settings

    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # an existing, world-readable home is tightened too
    settings = Settings(home=home)
    settings.ensure_dirs()
    for directory in (settings.home_dir, settings.artifacts_dir, settings.tmp_dir):
        assert _mode(directory) == 0o700, directory
    store = ArtifactStore(settings.artifacts_dir, settings.tmp_dir)
    assert _mode(store.lock_path) == 0o600
    staged, digest = _staged(store)
    assert _mode(staged.path) == 0o600
    target = store.commit(staged, digest)
    assert _mode(target) == 0o400
    assert _mode(target.parent) == _mode(target.parent.parent) == 0o700
    engine = make_engine(settings.sqlalchemy_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    database = settings.home_dir / "assay.db"
    assert _mode(database) == 0o600
    for suffix in ("-wal", "-shm"):
        sidecar = database.with_name(database.name + suffix)
        if sidecar.exists():
            assert _mode(sidecar) == 0o600, sidecar
    engine.dispose()


# --- stale staging files (issue 8, item 3) ------------------------------------------------------


def _dead_staging_file(store: ArtifactStore, name: str = "upload-dead.part") -> Path:
    """A `.part` file as a killed process leaves it: written, closed, no lock held on it."""
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    path = store.tmp_dir / name
    path.write_bytes(b"half an upload")
    return path


def test_removing_stale_staging_removes_files_no_process_holds(store: ArtifactStore) -> None:
    dead = _dead_staging_file(store)
    removed = store.remove_stale_staging()
    assert [entry.name for entry in removed] == [dead.name]
    assert removed[0].size == len(b"half an upload")
    assert not dead.exists()


def test_removing_stale_staging_spares_a_file_being_written(store: ArtifactStore) -> None:
    # Another server process sharing ASSAY_HOME must not lose the upload it is receiving.
    live = store.stage()
    live.write(b"still arriving")
    dead = _dead_staging_file(store)
    removed = store.remove_stale_staging()
    assert [entry.name for entry in removed] == [dead.name]
    assert live.path.exists()
    live.write(b" and more")
    digest = live.finish()
    assert store.commit(live, digest).read_bytes() == b"still arriving and more"


def test_removing_stale_staging_spares_a_finished_file_awaiting_inspection(
    store: ArtifactStore,
) -> None:
    # Between `finish()` and `commit()` the file is inspected, which can take minutes.
    staged, digest = _staged(store)
    assert store.remove_stale_staging() == []
    assert staged.path.exists()
    store.commit(staged, digest)
    assert store.exists(digest)


def test_removing_stale_staging_leaves_other_files_in_tmp_alone(store: ArtifactStore) -> None:
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    other = store.tmp_dir / "notes.txt"
    other.write_text("not a staging file")
    assert store.remove_stale_staging() == []
    assert other.exists()


def test_a_staged_file_removed_before_its_lock_was_taken_is_recreated(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window between creating the file and locking it: another process's clean-up may
    # remove it there; the stager must notice and stage a fresh file instead of writing into
    # an unlinked one.
    import registry.storage as storage

    real_flock = storage.fcntl.flock
    calls: list[Path] = []

    def flock_after_removal(fd: int, operation: int) -> None:
        if not calls:
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
            calls.append(path)
            path.unlink()
        real_flock(fd, operation)

    monkeypatch.setattr(storage.fcntl, "flock", flock_after_removal)
    staged = store.stage()
    monkeypatch.setattr(storage.fcntl, "flock", real_flock)
    assert calls and staged.path != calls[0]
    assert staged.path.exists()
    staged.discard()
