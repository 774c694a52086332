"""Reconciles the artifact store with the database after a crash; `assay doctor` and start-up.

A process killed during an upload leaves its staging file in `ASSAY_HOME/tmp`; one killed between
placing an artifact and committing its version row leaves a stored file that no version
references. `reconcile` removes the first (only those no live process holds, see
`ArtifactStore.remove_stale_staging`), moves the second to `ASSAY_HOME/quarantine/` with an audit
event each, and reports version rows whose artifact is missing, which nothing can repair.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from registry import audit
from registry.auth import SYSTEM
from registry.catalog.models import ModelVersion
from registry.db import new_session, transaction
from registry.storage import ArtifactStore

logger = logging.getLogger("assay.doctor")

QUARANTINED_ACTION = "artifact.quarantined"


class RemovedStagingFile(BaseModel):
    name: str
    size_bytes: int


class QuarantinedArtifact(BaseModel):
    digest: str
    size_bytes: int
    moved_to: str


class MissingArtifact(BaseModel):
    version_id: str
    model_id: str
    number: int
    digest: str


class DoctorReport(BaseModel):
    """What the check found and did; `ok` is false when a version's artifact is missing."""

    ok: bool
    referenced_artifacts: int
    removed_staging: list[RemovedStagingFile]
    quarantined: list[QuarantinedArtifact]
    missing_artifacts: list[MissingArtifact]
    unexpected_files: list[str]


def reconcile(engine: Engine, store: ArtifactStore, *, quarantine_dir: Path) -> DoctorReport:
    """Removes stale staging files, quarantines unreferenced artifacts; gives back the report.

    Runs under the store's lock, which a submission holds from placing its artifact until its
    version row is committed: an artifact seen here without a row has no request about to
    reference it.
    """
    removed = [
        RemovedStagingFile(name=entry.name, size_bytes=entry.size)
        for entry in store.remove_stale_staging()
    ]
    with store.exclusive():
        with new_session(engine) as session:
            rows = session.exec(
                select(
                    ModelVersion.id, ModelVersion.model_id, ModelVersion.number, ModelVersion.digest
                ).order_by(col(ModelVersion.model_id), col(ModelVersion.number))
            ).all()
        referenced = {digest for _, _, _, digest in rows}
        stored, unexpected = store.blobs()
        missing = [
            MissingArtifact(
                version_id=str(version_id), model_id=str(model_id), number=number, digest=digest
            )
            for version_id, model_id, number, digest in rows
            if digest not in stored
        ]
        quarantined = _quarantine(engine, store, sorted(stored - referenced), quarantine_dir)
    return DoctorReport(
        ok=not missing,
        referenced_artifacts=len(referenced),
        removed_staging=removed,
        quarantined=quarantined,
        missing_artifacts=missing,
        unexpected_files=[str(path.relative_to(store.root)) for path in unexpected],
    )


def _quarantine(
    engine: Engine, store: ArtifactStore, digests: list[str], quarantine_dir: Path
) -> list[QuarantinedArtifact]:
    """Moves each artifact out and records one audit event per artifact, in one transaction.

    If the transaction fails the files are moved back, so the store and the trail agree.
    """
    moved: list[tuple[str, int, Path]] = []
    try:
        for digest in digests:
            size = store.path_for(digest).stat().st_size
            moved.append((digest, size, store.quarantine(digest, quarantine_dir)))
        if not moved:
            return []
        with transaction(engine) as session:
            for digest, size, target in moved:
                audit.append(
                    session,
                    actor=SYSTEM.audit,
                    action=QUARANTINED_ACTION,
                    object_type="artifact",
                    object_id=digest.removeprefix("sha256:"),
                    payload={
                        "digest": digest,
                        "size_bytes": size,
                        "moved_to": str(target.relative_to(quarantine_dir.parent)),
                        "reason": "no version references it (left by an interrupted submission)",
                    },
                )
    except BaseException:
        for digest, _, target in reversed(moved):
            store.restore(digest, target)
        raise
    return [
        QuarantinedArtifact(
            digest=digest,
            size_bytes=size,
            moved_to=str(target.relative_to(quarantine_dir.parent)),
        )
        for digest, size, target in moved
    ]


def log_report(report: DoctorReport) -> None:
    """Writes what the start-up check found and did to the server log."""
    for staged in report.removed_staging:
        logger.warning("removed stale staging file %s (%d bytes)", staged.name, staged.size_bytes)
    for item in report.quarantined:
        logger.warning(
            "quarantined %s (%d bytes, no version references it) to %s",
            item.digest,
            item.size_bytes,
            item.moved_to,
        )
    for lost in report.missing_artifacts:
        logger.error(
            "version %s (model %s, number %d) references %s, which is not in the store",
            lost.version_id,
            lost.model_id,
            lost.number,
            lost.digest,
        )
    for path in report.unexpected_files:
        logger.warning("the artifact store holds a file it did not name: %s (left alone)", path)
    logger.info(
        "store check: %d referenced artifact(s), %d staging file(s) removed, %d quarantined, "
        "%d missing",
        report.referenced_artifacts,
        len(report.removed_staging),
        len(report.quarantined),
        len(report.missing_artifacts),
    )
