"""HTTP routes for models and versions, including the streamed submission upload."""

import uuid
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.applications import Starlette

from registry.auth import CatalogReader, CatalogWriter
from registry.catalog import service
from registry.catalog.intake import IntakeBusy, IntakeGate
from registry.catalog.models import ModelCreate, ModelPublic, VersionPublic
from registry.db import SessionDep
from registry.deps import EngineDep, SettingsDep, StoreDep
from registry.errors import ErrorBody, error_responses
from registry.limits import STREAMED, body_limit
from registry.pagination import Page, PageDep
from registry.settings import Settings
from registry.uploads import receive_submission

router = APIRouter(tags=["models"])

_SUBMISSION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["manifest", "artifact"],
                    "properties": {
                        "manifest": {
                            "type": "string",
                            "description": "The model manifest as JSON (see /schemas/manifest).",
                        },
                        "artifact": {
                            "type": "string",
                            "format": "binary",
                            "description": "ONNX model, or safetensors weights.",
                        },
                    },
                }
            }
        },
    }
}

_BUSY_RESPONSE: dict[str, Any] = {
    "model": ErrorBody,
    "description": "Every intake slot (ASSAY_MAX_CONCURRENT_INTAKES) stayed busy for "
    "ASSAY_INTAKE_WAIT_S seconds (`error` is `busy`); nothing was registered.",
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before sending the submission again.",
            "schema": {"type": "integer"},
        }
    },
}


@router.post(
    "/models",
    status_code=201,
    response_model=ModelPublic,
    responses=error_responses(401, 403, 404, 409, 422),
)
def create_model(data: ModelCreate, session: SessionDep, actor: CatalogWriter) -> ModelPublic:
    model = service.create_model(session, actor, data=data)
    return service.model_public(session, model)


@router.get("/models", response_model=Page[ModelPublic], responses=error_responses(401, 403, 422))
def list_models(session: SessionDep, actor: CatalogReader, page: PageDep) -> Page[ModelPublic]:
    rows, count = service.list_models(session, actor, limit=page.limit, offset=page.offset)
    return Page(data=[service.model_public(session, m) for m in rows], count=count)


@router.get(
    "/models/{model_id}", response_model=ModelPublic, responses=error_responses(401, 403, 404, 422)
)
def get_model(model_id: uuid.UUID, session: SessionDep, actor: CatalogReader) -> ModelPublic:
    return service.model_public(session, service.visible_model(session, actor, model_id))


@router.post(
    "/models/{model_id}/versions",
    status_code=201,
    response_model=VersionPublic,
    responses={**error_responses(401, 403, 404, 409, 413, 422, 507), 503: _BUSY_RESPONSE},
    openapi_extra=_SUBMISSION_BODY,
)
@body_limit(STREAMED)  # receive_submission streams the body under ASSAY_MAX_ARTIFACT_BYTES
async def submit_version(
    model_id: uuid.UUID,
    request: Request,
    actor: CatalogWriter,
    settings: SettingsDep,
    engine: EngineDep,
    store: StoreDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Repeat a submission safely: the same key and payload return the "
            "first response.",
        ),
    ] = None,
) -> JSONResponse:
    await run_in_threadpool(service.check_model_writable, engine, actor, model_id)
    submission = await receive_submission(
        request,
        store=store,
        max_artifact=settings.max_artifact_bytes,
        max_manifest=settings.max_manifest_bytes,
    )
    work = partial(
        service.submit_version,
        engine,
        store,
        settings,
        actor,
        model_id=model_id,
        submission=submission,
        idempotency_key=idempotency_key,
    )
    try:
        status, body = await _intake_gate(request.app, settings).run(work)
    except IntakeBusy as busy:
        submission.artifact.discard()
        return JSONResponse(
            busy.body().model_dump(),
            status_code=busy.status,
            headers={"Retry-After": str(busy.retry_after_s)},
        )
    except BaseException:
        submission.artifact.discard()  # already gone if the service refused it
        raise
    return JSONResponse(body, status_code=status)


def _intake_gate(app: Starlette, settings: Settings) -> IntakeGate:
    """Gives back the app's intake gate, made on first use (in the event loop that serves it)."""
    gate: IntakeGate | None = getattr(app.state, "intake_gate", None)
    if gate is None:
        gate = app.state.intake_gate = IntakeGate(
            capacity=settings.max_concurrent_intakes, wait_s=settings.intake_wait_s
        )
    return gate


@router.get(
    "/models/{model_id}/versions",
    response_model=Page[VersionPublic],
    responses=error_responses(401, 403, 404, 422),
)
def list_versions(
    model_id: uuid.UUID, session: SessionDep, actor: CatalogReader, page: PageDep
) -> Page[VersionPublic]:
    rows, count = service.list_versions(
        session, actor, model_id=model_id, limit=page.limit, offset=page.offset
    )
    return Page(data=[VersionPublic.model_validate(v) for v in rows], count=count)


@router.get(
    "/versions/{version_id}",
    response_model=VersionPublic,
    responses=error_responses(401, 403, 404, 422),
)
def get_version(version_id: uuid.UUID, session: SessionDep, actor: CatalogReader) -> VersionPublic:
    return VersionPublic.model_validate(service.visible_version(session, actor, version_id))
