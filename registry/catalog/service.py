"""Models and versions: creation, visibility and submission intake (transitions: lifecycle.py)."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import rfc8785
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from registry import audit, checkpoints
from registry.auth import Actor
from registry.catalog.models import (
    IdempotencyRecord,
    Model,
    ModelCreate,
    ModelPublic,
    ModelVersion,
    VersionPublic,
    VersionStatus,
)
from registry.db import new_session, utcnow
from registry.errors import Conflict, Invalid, NotFound, Unauthorized
from registry.principals.models import ApiToken, Role
from registry.settings import Settings
from registry.storage import ArtifactStore
from registry.uploads import Submission
from registry.vendors.models import Vendor

# --- models ----------------------------------------------------------------------------------


def _model_not_found(model_id: uuid.UUID) -> NotFound:
    return NotFound(f"No model has id {model_id}.")


def visible_model(session: Session, actor: Actor, model_id: uuid.UUID) -> Model:
    """The model if the actor may see it; another vendor's model is reported as not found."""
    model = session.get(Model, model_id)
    if model is None or (actor.role == Role.vendor and model.vendor_id != actor.vendor_id):
        raise _model_not_found(model_id)
    return model


def _version_count(session: Session, model_id: uuid.UUID) -> int:
    return session.exec(
        select(func.count()).select_from(ModelVersion).where(ModelVersion.model_id == model_id)
    ).one()


def model_public(session: Session, model: Model) -> ModelPublic:
    return ModelPublic(
        id=model.id,
        vendor_id=model.vendor_id,
        name=model.name,
        description=model.description,
        created_at=model.created_at,
        version_count=_version_count(session, model.id),
    )


def create_model(session: Session, actor: Actor, *, data: ModelCreate) -> Model:
    """Creates a model in the vendor's namespace (vendors) or in the named vendor's (admins)."""
    if actor.role == Role.vendor:
        if data.vendor_id is not None and data.vendor_id != actor.vendor_id:
            # Same answer as for an unknown vendor: a vendor learns nothing about the others.
            raise NotFound(f"No vendor has id {data.vendor_id}.")
        vendor_id = actor.vendor_id
    else:
        if data.vendor_id is None:
            raise Invalid(
                "An admin creating a model must name its vendor: give vendor_id.",
                problems=[{"path": "vendor_id", "message": "required when an admin creates"}],
            )
        vendor_id = data.vendor_id
    assert vendor_id is not None
    if session.get(Vendor, vendor_id) is None:
        raise NotFound(f"No vendor has id {vendor_id}.")
    exists = session.exec(
        select(Model).where(Model.vendor_id == vendor_id, Model.name == data.name)
    ).first()
    if exists is not None:
        raise Conflict(
            f"This vendor already has a model named {data.name!r} (id {exists.id}): submit a "
            "new version to it instead."
        )
    model = Model(name=data.name, description=data.description, vendor_id=vendor_id)
    session.add(model)
    session.flush()
    audit.append(
        session,
        actor=actor.audit,
        action="model.created",
        object_type="model",
        object_id=model.id,
        payload={"name": model.name, "vendor_id": str(vendor_id)},
    )
    return model


def list_models(
    session: Session, actor: Actor, *, limit: int, offset: int
) -> tuple[list[Model], int]:
    query = select(Model)
    count_query = select(func.count()).select_from(Model)
    if actor.role == Role.vendor:
        query = query.where(Model.vendor_id == actor.vendor_id)
        count_query = count_query.where(Model.vendor_id == actor.vendor_id)
    rows = session.exec(
        query.order_by(col(Model.created_at), col(Model.id)).offset(offset).limit(limit)
    )
    return list(rows.all()), session.exec(count_query).one()


# --- versions --------------------------------------------------------------------------------


def visible_version(session: Session, actor: Actor, version_id: uuid.UUID) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is not None:
        model = session.get(Model, version.model_id)
        if model is not None and (actor.role != Role.vendor or model.vendor_id == actor.vendor_id):
            return version
    raise NotFound(f"No version has id {version_id}.")


def list_versions(
    session: Session, actor: Actor, *, model_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[ModelVersion], int]:
    visible_model(session, actor, model_id)
    rows = session.exec(
        select(ModelVersion)
        .where(ModelVersion.model_id == model_id)
        .order_by(col(ModelVersion.number))
        .offset(offset)
        .limit(limit)
    )
    return list(rows.all()), _version_count(session, model_id)


# --- submission ------------------------------------------------------------------------------


def _already_registered(session: Session, actor: Actor, digest: str) -> Conflict | None:
    existing = session.exec(select(ModelVersion).where(ModelVersion.digest == digest)).first()
    if existing is None:
        return None
    model = session.get(Model, existing.model_id)
    assert model is not None
    if actor.role == Role.admin or model.vendor_id == actor.vendor_id:
        return Conflict(
            f"This artifact ({digest}) is already registered as version {existing.number} "
            f"(id {existing.id}) of model {model.name!r}: a digest identifies one version.",
            code="already_registered",
        )
    return Conflict("This artifact is already registered.", code="already_registered")


def _request_hash(model_id: uuid.UUID, manifest: dict[str, Any], digest: str) -> str:
    payload: dict[str, Any] = {"model_id": str(model_id), "manifest": manifest, "digest": digest}
    return hashlib.sha256(rfc8785.dumps(payload)).hexdigest()


def _replay(
    session: Session, actor: Actor, key: str, request_hash: str
) -> tuple[int, dict[str, Any]] | None:
    record = session.exec(
        select(IdempotencyRecord).where(
            IdempotencyRecord.principal_id == actor.id, IdempotencyRecord.key == key
        )
    ).first()
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise Invalid(
            f"The Idempotency-Key {key!r} was already used for a different submission: use a "
            "new key for a new submission.",
            code="idempotency_key_reused",
        )
    return record.status_code, record.response


def _parse_manifest(raw: bytes) -> tuple[Any, dict[str, Any]]:
    """Gives back the parsed manifest and its JSON document.

    A refused manifest raises ManifestInvalid, which the app renders as a 422 (`registry.errors`).
    """
    from validators.manifest import parse_manifest

    return parse_manifest(raw), json.loads(raw)


def _inspect(submission: Submission, manifest: Any, settings: Settings) -> dict[str, Any]:
    from validators.runtime.intake import IntakeFailed, IntakeRefused, inspect_in_subprocess

    try:
        report = inspect_in_subprocess(
            submission.artifact.path,
            manifest,
            memory_limit_bytes=settings.inspection_memory_bytes,
            timeout_s=settings.inspection_timeout_s,
            hide=settings.sandbox_hidden_paths(),
        )
    except IntakeRefused as exc:
        raise Invalid(exc.detail, code=exc.code, problems=exc.problems) from exc
    except IntakeFailed as exc:
        raise Invalid(
            f"The artifact could not be inspected: {exc}. Nothing was registered.",
            code="inspection_failed",
        ) from exc
    data: dict[str, Any] = report.model_dump(mode="json")
    return data


def submit_version(
    engine: Engine,
    store: ArtifactStore,
    settings: Settings,
    actor: Actor,
    *,
    model_id: uuid.UUID,
    submission: Submission,
    idempotency_key: str | None,
) -> tuple[int, dict[str, Any]]:
    """Registers a received submission as the model's next version; gives (status, body).

    Every refusal leaves nothing behind: the staged file is deleted, no row is written.
    """
    staged = submission.artifact
    try:
        manifest, manifest_raw = _parse_manifest(submission.manifest)
        request_hash = _request_hash(model_id, manifest_raw, submission.digest)
        with new_session(engine, write=False) as session:
            model = visible_model(session, actor, model_id)
            if idempotency_key and (
                replay := _replay(session, actor, idempotency_key, request_hash)
            ):
                staged.discard()
                return replay
            if manifest.name != model.name:
                raise Invalid(
                    f"The manifest names the model {manifest.name!r} but it is being submitted to "
                    f"{model.name!r}: submit it to the right model or fix the manifest's name.",
                    code="invalid_manifest",
                    problems=[{"path": "name", "message": f"expected {model.name!r}"}],
                )
            if conflict := _already_registered(session, actor, submission.digest):
                raise conflict
        report = _inspect(submission, manifest, settings)
    except BaseException:
        staged.discard()
        raise

    with store.exclusive():
        store.commit(staged, submission.digest)
        try:
            return _record_version(
                engine,
                actor,
                model_id=model_id,
                submission=submission,
                manifest=manifest,
                report=report,
                request_hash=request_hash,
                idempotency_key=idempotency_key,
            )
        except BaseException as exc:
            with new_session(engine, write=False) as session:
                referenced = session.exec(
                    select(ModelVersion).where(ModelVersion.digest == submission.digest)
                ).first()
                if referenced is None:
                    store.remove(submission.digest)
                if isinstance(exc, IntegrityError):
                    # A concurrent retry with the same Idempotency-Key lost the race to the
                    # first request: it gets the first response, as a sequential retry would
                    # (the replay is checked before the duplicate digest, as above).
                    replay = (
                        _replay(session, actor, idempotency_key, request_hash)
                        if idempotency_key
                        else None
                    )
                    if replay:
                        return replay
                    if conflict := _already_registered(session, actor, submission.digest):
                        raise conflict from exc
            raise


def _check_token_still_valid(session: Session, actor: Actor) -> None:
    """Refuses (401) when the caller's token was revoked or expired since the upload began.

    An upload and its inspection can take minutes; the token authenticated at the start of the
    request must still be good when the version it submits is recorded.
    """
    if actor.token_id is None:
        return
    token = session.exec(
        select(ApiToken).where(ApiToken.id == actor.token_id).with_for_update()
    ).first()
    if token is None or token.revoked_at is not None:
        raise Unauthorized(
            "The token was revoked while the upload was in progress; nothing was registered. "
            "Ask an admin for a new token and submit again."
        )
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise Unauthorized(
            "The token expired while the upload was in progress; nothing was registered. "
            "Ask an admin for a new token and submit again."
        )


def _record_version(
    engine: Engine,
    actor: Actor,
    *,
    model_id: uuid.UUID,
    submission: Submission,
    manifest: Any,
    report: dict[str, Any],
    request_hash: str,
    idempotency_key: str | None,
) -> tuple[int, dict[str, Any]]:
    """The one transaction: next version number, version row, audit event, idempotency record."""
    with new_session(engine) as session:
        _check_token_still_valid(session, actor)
        # Locking the model row serializes concurrent submissions to one model (PostgreSQL);
        # SQLite's BEGIN IMMEDIATE already serializes every writer.
        model = session.exec(select(Model).where(Model.id == model_id).with_for_update()).one()
        number = (
            session.exec(
                select(func.max(ModelVersion.number)).where(ModelVersion.model_id == model.id)
            ).one()
            or 0
        ) + 1
        version = ModelVersion(
            model_id=model.id,
            number=number,
            version_label=manifest.version_label,
            digest=submission.digest,
            status=VersionStatus.submitted.value,
            format=report["format"],
            size_bytes=submission.artifact.size,
            manifest=manifest.model_dump(mode="json"),
            intake_report=report,
            submitted_by=actor.id,
        )
        session.add(version)
        session.flush()
        audit.append(
            session,
            actor=actor.audit,
            action="version.submitted",
            object_type="model_version",
            object_id=version.id,
            payload={
                "model_id": str(model.id),
                "number": number,
                "version_label": version.version_label,
                "digest": version.digest,
                "format": version.format,
                "size_bytes": version.size_bytes,
            },
        )
        checkpoints.at_state_change(session)
        body = VersionPublic.model_validate(version).model_dump(mode="json")
        if idempotency_key:
            session.add(
                IdempotencyRecord(
                    principal_id=actor.id,
                    key=idempotency_key,
                    request_hash=request_hash,
                    status_code=201,
                    response=body,
                )
            )
        session.commit()
        return 201, body


def check_model_writable(engine: Engine, actor: Actor, model_id: uuid.UUID) -> None:
    """Refuses early, before the upload body is read, when the model is not the caller's."""
    with new_session(engine, write=False) as session:
        visible_model(session, actor, model_id)
