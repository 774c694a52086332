"""Signed checkpoints of the audit chain: the key, signing, storage, export and verification.

A checkpoint signs (Ed25519) the chain's length and head hash at a moment, and the hash of the
checkpoint before it, so the checkpoints form a chain of their own. The private key lives in a
file outside the database: someone who can write the database but cannot read that file cannot
sign a checkpoint for a rewritten chain. What that does and does not protect against is written in
docs/security.md ("Signed checkpoints of the audit trail").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import anyio.to_thread
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Field as SQLField
from sqlmodel import Session, SQLModel, col, func, select

from registry import audit
from registry.errors import AssayError, Invalid, Problem
from registry.settings import Settings
from registry.storage import PRIVATE_DIR, PRIVATE_FILE, private_dir

log = logging.getLogger(__name__)

EXPORT_FORMAT: Literal["assay-audit-checkpoints/1"] = "assay-audit-checkpoints/1"
_HEX64 = r"^[0-9a-f]{64}$"


class UnsafeAuditKey(AssayError):
    """The signing key file is missing, unreadable, not an Ed25519 key, or readable by others."""

    status = 500
    code = "audit_key_unsafe"


# --- the table and its records ------------------------------------------------------------------


class AuditCheckpoint(SQLModel, table=True):
    __tablename__ = "audit_checkpoint"

    seq: int = SQLField(primary_key=True, sa_column_kwargs={"autoincrement": False})
    length: int
    head: str = SQLField(max_length=64)
    at: str = SQLField(max_length=32)
    prev_checkpoint: str = SQLField(max_length=64, unique=True)
    key_id: str = SQLField(max_length=64)
    signature: str = SQLField(max_length=128)
    hash: str = SQLField(max_length=64, unique=True)


class CheckpointRecord(BaseModel):
    """One checkpoint as the API shows it and as an export holds it."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    seq: int = Field(ge=1)
    length: int = Field(ge=0)
    head: str = Field(pattern=_HEX64, description="Hash of event `length` (zeros for none).")
    at: str = Field(max_length=32)
    prev_checkpoint: str = Field(pattern=_HEX64, description="Hash of the checkpoint before.")
    key_id: str = Field(pattern=_HEX64, description="SHA-256 of the raw Ed25519 public key.")
    signature: str = Field(pattern=r"^[0-9a-f]{128}$", description="Ed25519, over `signed`.")
    hash: str = Field(pattern=_HEX64, description="SHA-256 of the signed canonical JSON.")


class CheckpointExport(BaseModel):
    """What `assay audit checkpoint --export` writes: every checkpoint, oldest first."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["assay-audit-checkpoints/1"] = EXPORT_FORMAT
    exported_at: str
    key_ids: list[str]
    checkpoints: list[CheckpointRecord]


def signed_bytes(record: AuditCheckpoint | CheckpointRecord) -> bytes:
    """The RFC 8785 canonical JSON that is signed and hashed (every field but those two)."""
    return rfc8785.dumps(
        {
            "seq": record.seq,
            "length": record.length,
            "head": record.head,
            "at": record.at,
            "prev_checkpoint": record.prev_checkpoint,
            "key_id": record.key_id,
        }
    )


# --- the key ------------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the 32 raw bytes of the public key: the key's fingerprint."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


@dataclass(frozen=True)
class Signer:
    """The private key and its id; signs checkpoints."""

    private_key: Ed25519PrivateKey
    key_id: str

    @classmethod
    def of(cls, private_key: Ed25519PrivateKey) -> Signer:
        return cls(private_key, key_id(private_key.public_key()))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


def _create_key(path: Path) -> None:
    """Writes a new key next to `path` (0600) and links it into place unless one appeared."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, name = tempfile.mkstemp(prefix=".key-", dir=path.parent)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, pem)
        os.fsync(fd)
        os.close(fd)
        # link() fails if the key exists: two processes starting at once end up with one key.
        with suppress(FileExistsError):
            os.link(name, path)
    finally:
        os.unlink(name)


def load_signer(settings: Settings, *, create: bool = True) -> Signer:
    """The checkpoint signing key of the installation, created (0600 in a 0700 folder) if absent.

    A key file that others may read is refused: it may already have leaked.
    """
    path = settings.audit_key_file
    if settings.audit_key_path is None:
        private_dir(path.parent)
    else:
        path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if not path.exists():
        if not create:
            raise UnsafeAuditKey(
                f"There is no audit signing key at {path}: the server creates it on start "
                "(or set ASSAY_AUDIT_KEY_PATH to where it is)."
            )
        _create_key(path)
        log.warning("created a new audit checkpoint signing key at %s", path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UnsafeAuditKey(
            f"The audit signing key {path} has mode {mode:04o}; other users may have read it. "
            "If no one can have, `chmod 600` it; otherwise delete it, let Assay create a new "
            "one and record the new public key (`assay audit key`)."
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise UnsafeAuditKey(
            f"The audit signing key {path} cannot be read as an unencrypted PEM private key: {exc}"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UnsafeAuditKey(f"The audit signing key {path} is not an Ed25519 key.")
    return Signer.of(key)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (as `assay audit key` prints it)."""
    expected = "an Ed25519 public key in PEM form, as `assay audit key` prints it"
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise Invalid(f"Cannot read the public key file {path}: {exc.strerror}.") from exc
    except (ValueError, TypeError) as exc:
        raise Invalid(f"{path} is not {expected}.") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise Invalid(f"{path} holds another kind of public key; expected {expected}.")
    return key


# --- making checkpoints --------------------------------------------------------------------------


def latest(session: Session) -> AuditCheckpoint | None:
    return session.exec(
        select(AuditCheckpoint).order_by(col(AuditCheckpoint.seq).desc()).limit(1)
    ).first()


def create_checkpoint(
    session: Session, signer: Signer, *, only_if_moved: bool = True
) -> AuditCheckpoint | None:
    """Signs the chain's head in the caller's transaction; None if it has not moved since."""
    audit.lock_chain(session)
    head = audit.head_event(session)
    length, head_hash = (0, audit.GENESIS_HASH) if head is None else (head.seq, head.hash)
    previous = latest(session)
    if only_if_moved and previous is not None and previous.length == length:
        return None
    if previous is not None and previous.key_id != signer.key_id:
        log.warning(
            "the audit signing key changed (checkpoint %s was signed by %s, this key is %s): "
            "record the new public key",
            previous.seq,
            previous.key_id,
            signer.key_id,
        )
    checkpoint = AuditCheckpoint(
        seq=1 if previous is None else previous.seq + 1,
        length=length,
        head=head_hash,
        at=audit.format_time(datetime.now(UTC)),
        prev_checkpoint=audit.GENESIS_HASH if previous is None else previous.hash,
        key_id=signer.key_id,
        signature="",
        hash="",
    )
    body = signed_bytes(checkpoint)
    checkpoint.signature = signer.private_key.sign(body).hex()
    checkpoint.hash = hashlib.sha256(body).hexdigest()
    session.add(checkpoint)
    session.flush()
    return checkpoint


# Which signer serves which engine: the server registers its own at start (periodic_checkpoints).
_signers: dict[Engine, Signer] = {}
_signers_lock = threading.Lock()


def register(engine: Engine, signer: Signer) -> None:
    with _signers_lock:
        _signers[engine] = signer


def unregister(engine: Engine) -> None:
    with _signers_lock:
        _signers.pop(engine, None)


def at_state_change(session: Session) -> AuditCheckpoint | None:
    """Signs a checkpoint in the caller's transaction, after the event of a version's change.

    Needs the signer the server registered for this database at start; without one (code run
    outside the server) it logs that and leaves the change to the next periodic checkpoint.
    """
    bind = session.get_bind()
    with _signers_lock:
        signer = _signers.get(bind) if isinstance(bind, Engine) else None
    if signer is None:
        log.warning("no audit signing key is loaded for this database; checkpoint deferred")
        return None
    return create_checkpoint(session, signer)


def checkpoint_if_moved(engine: Engine, signer: Signer) -> AuditCheckpoint | None:
    """One checkpoint in its own transaction, if the chain moved since the last one."""
    from registry.db import new_session

    with new_session(engine) as session:
        checkpoint = create_checkpoint(session, signer)
        session.commit()
        return checkpoint


async def _every(interval_s: float, engine: Engine, signer: Signer) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await anyio.to_thread.run_sync(checkpoint_if_moved, engine, signer)
        except Exception:  # the next round tries again; the server keeps serving
            log.exception("the periodic audit checkpoint failed")


@asynccontextmanager
async def periodic_checkpoints(settings: Settings, engine: Engine) -> AsyncIterator[Signer]:
    """For the server's lifespan: loads (or creates) the key and checkpoints every interval."""
    signer = await anyio.to_thread.run_sync(load_signer, settings)
    register(engine, signer)
    task = asyncio.create_task(_every(settings.checkpoint_interval_s, engine, signer))
    try:
        yield signer
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        unregister(engine)


def checkpoint_installation(settings: Settings) -> tuple[AuditCheckpoint | None, bool]:
    """For `assay audit checkpoint`: one now if the chain moved; (newest checkpoint, created)."""
    from registry.db import get_engine, new_session

    signer = load_signer(settings)
    engine = get_engine(settings)
    created = checkpoint_if_moved(engine, signer)
    if created is not None:
        return created, True
    with new_session(engine) as session:
        return latest(session), False


# --- listing and export --------------------------------------------------------------------------


def list_checkpoints(
    session: Session, *, limit: int, offset: int
) -> tuple[list[AuditCheckpoint], int]:
    count = session.exec(select(func.count()).select_from(AuditCheckpoint)).one()
    rows = session.exec(
        select(AuditCheckpoint).order_by(col(AuditCheckpoint.seq)).offset(offset).limit(limit)
    ).all()
    return list(rows), count


def _all(session: Session) -> Iterator[AuditCheckpoint]:
    return iter(
        session.exec(
            select(AuditCheckpoint)
            .order_by(col(AuditCheckpoint.seq))
            .execution_options(yield_per=1000)
        )
    )


def export(session: Session) -> CheckpointExport:
    """Every stored checkpoint, oldest first, with the ids of the keys that signed them."""
    records = [CheckpointRecord.model_validate(c) for c in _all(session)]
    return CheckpointExport(
        exported_at=audit.format_time(datetime.now(UTC)),
        key_ids=sorted({r.key_id for r in records}),
        checkpoints=records,
    )


def export_installation(settings: Settings) -> CheckpointExport:
    from registry.db import get_engine, new_session

    with new_session(get_engine(settings)) as session:
        return export(session)


def read_export(path: Path) -> list[CheckpointRecord]:
    """The checkpoints of an export file; a file that is not one is refused, field by field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"Cannot read the checkpoints file {path}: {exc}.") from exc
    try:
        document = CheckpointExport.model_validate_json(text)
    except ValidationError as exc:
        problems = [
            Problem(path=".".join(str(p) for p in e["loc"]) or "(file)", message=e["msg"])
            for e in exc.errors()
        ]
        raise Invalid(
            f"{path} is not a checkpoint export (as `assay audit checkpoint --export` writes).",
            problems=problems,
        ) from exc
    return document.checkpoints


def write_export(document: CheckpointExport, path: Path) -> None:
    """Writes the export atomically (a reader never sees half a file)."""
    data = json.dumps(document.model_dump(mode="json"), indent=1) + "\n"
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    except OSError as exc:
        raise Invalid(
            f"Cannot write the checkpoint export {path}: {exc.strerror} "
            f"({path.parent} must be an existing, writable folder)."
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, 0o644)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


# --- verification --------------------------------------------------------------------------------


def _checkpoint_chain_problem(
    records: Sequence[CheckpointRecord], keys: dict[str, Ed25519PublicKey], source: str
) -> tuple[int, str] | None:
    """The first checkpoint that is missing, unlinked, altered or not signed by a given key."""
    expected_prev, previous_length = audit.GENESIS_HASH, 0
    for number, record in enumerate(records, start=1):
        seq = record.seq
        body = signed_bytes(record)
        key = keys.get(record.key_id)
        if seq != number:
            return number, f"checkpoint {number} is missing from the {source} ({seq} follows)"
        if record.prev_checkpoint != expected_prev:
            return seq, (
                f"checkpoint {seq} in the {source}: its previous-checkpoint hash does not match "
                f"checkpoint {seq - 1}"
            )
        if hashlib.sha256(body).hexdigest() != record.hash:
            return seq, f"checkpoint {seq} in the {source}: its content does not match its hash"
        if key is None:
            return seq, (
                f"checkpoint {seq} in the {source} is signed by key {record.key_id}, which is "
                f"not a given public key ({', '.join(sorted(keys))})"
            )
        try:
            key.verify(bytes.fromhex(record.signature), body)
        except InvalidSignature:
            return seq, (
                f"checkpoint {seq} in the {source}: its signature does not verify under key "
                f"{record.key_id} (forged or altered)"
            )
        if record.length < previous_length:
            return seq, (
                f"checkpoint {seq} in the {source} covers {record.length} events, fewer than "
                f"checkpoint {seq - 1} ({previous_length})"
            )
        expected_prev, previous_length = record.hash, record.length
    return None


def _export_problem(
    exported: Sequence[CheckpointRecord], stored: Sequence[CheckpointRecord]
) -> tuple[int, str] | None:
    """The first exported checkpoint that the database no longer holds as it was exported."""
    by_seq = {r.seq: r for r in stored}
    for record in exported:
        found = by_seq.get(record.seq)
        if found is None:
            return record.seq, (
                f"exported checkpoint {record.seq} (event {record.length}, head "
                f"{record.head}) is not in the database: checkpoints were deleted, or the "
                "database was restored from an older copy"
            )
        if found != record:
            return record.seq, (
                f"checkpoint {record.seq} in the database differs from the exported one"
            )
    return None


def _failed(reason: str, *, checkpoint: int, verified: int) -> audit.AuditVerification:
    return audit.AuditVerification(
        ok=False,
        length=0,
        head=None,
        reason=reason,
        broken_checkpoint=checkpoint,
        checkpoints_verified=verified,
    )


def verify_with_checkpoints(
    session: Session,
    *,
    public_keys: Sequence[Ed25519PublicKey],
    exported: Sequence[CheckpointRecord] | None = None,
    expect_head: str | None = None,
) -> audit.AuditVerification:
    """Verifies the chain, the stored checkpoints under the given keys, and the export.

    Every stored (and exported) checkpoint must be signed by one of the keys and chained to the
    one before; every exported checkpoint must still be stored as exported; and at each
    checkpoint's length the event chain must have exactly the signed head. A rewrite that was
    re-hashed, a truncation, or a deleted or forged checkpoint fails, naming the checkpoint.
    """
    keys = {key_id(k): k for k in public_keys}
    stored = [CheckpointRecord.model_validate(c) for c in _all(session)]
    if problem := _checkpoint_chain_problem(stored, keys, "database"):
        return _failed(problem[1], checkpoint=problem[0], verified=0)
    if exported is not None:
        if problem := _checkpoint_chain_problem(exported, keys, "export"):
            return _failed(problem[1], checkpoint=problem[0], verified=0)
        if problem := _export_problem(exported, stored):
            return _failed(problem[1], checkpoint=problem[0], verified=0)

    wanted = {r.length for r in stored}
    observed: dict[int, str] = {0: audit.GENESIS_HASH}

    def watched(events: Iterable[audit.AuditEvent]) -> Iterator[audit.AuditEvent]:
        for event in events:
            if event.seq in wanted:
                observed[event.seq] = event.hash
            yield event

    rows = session.exec(
        select(audit.AuditEvent)
        .order_by(col(audit.AuditEvent.seq))
        .execution_options(yield_per=1000)
    )
    result = audit.verify_events(watched(rows), expect_head=expect_head)
    result.checkpoints_verified = 0
    if not result.ok:
        return result
    matched_length = 0
    for record in stored:
        if record.length > result.length:
            return result.model_copy(
                update={
                    "ok": False,
                    "broken_checkpoint": record.seq,
                    "reason": (
                        f"checkpoint {record.seq} signed a chain of {record.length} events but "
                        f"the chain has {result.length}: events {result.length + 1} to "
                        f"{record.length} were deleted"
                    ),
                }
            )
        if observed.get(record.length) != record.head:
            first = matched_length + 1
            which = (
                f"event {record.length} was rewritten"
                if first == record.length
                else f"an event from {first} to {record.length} was rewritten"
            )
            return result.model_copy(
                update={
                    "ok": False,
                    "broken_checkpoint": record.seq,
                    "reason": (
                        f"checkpoint {record.seq} signed head {record.head} for event "
                        f"{record.length}, but that event now hashes to "
                        f"{observed.get(record.length)}: {which} and the events after it "
                        "re-hashed"
                    ),
                }
            )
        matched_length = record.length
        result.checkpoints_verified += 1
    result.events_after_last_checkpoint = result.length - matched_length
    return result


def verify_installation(
    *,
    public_key_paths: Sequence[Path],
    checkpoints_path: Path | None = None,
    expect_head: str | None = None,
) -> audit.AuditVerification:
    """For `assay audit verify --public-key`: the installation's chain and checkpoints."""
    from registry.db import get_engine, new_session

    public_keys = [load_public_key(p) for p in public_key_paths]
    exported = None if checkpoints_path is None else read_export(checkpoints_path)
    with new_session(get_engine()) as session:
        return verify_with_checkpoints(
            session, public_keys=public_keys, exported=exported, expect_head=expect_head
        )


def public_key_of_installation(settings: Settings) -> tuple[str, str]:
    """For `assay audit key`: (PEM, key id) of the installation's key, created if absent."""
    signer = load_signer(settings)
    return public_key_pem(signer.public_key), signer.key_id
