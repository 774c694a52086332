"""The FastAPI application factory: routers, error handlers, OpenAPI, and `serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry import __version__
from registry.audit.routes import router as audit_router
from registry.catalog.routes import router as catalog_router
from registry.checkpoints import periodic_checkpoints
from registry.db import check_current, get_engine
from registry.deps import AppResources, app_resources, install_resources
from registry.errors import (
    INPUT_INVALID_STATUS,
    AssayError,
    ErrorBody,
    Problem,
    error_body,
    error_responses,
    input_invalid_body,
)
from registry.limits import RequestGuard, allowed_methods
from registry.principals.routes import router as principals_router
from registry.settings import Settings, get_settings
from registry.storage import ArtifactStore
from registry.vendors.routes import router as vendors_router
from validators.problems import InputInvalid

API_PREFIX = "/api/v1"
# Reachable without a token; a test walks every other route and expects 401.
PUBLIC_PATHS = frozenset(
    {
        f"{API_PREFIX}/health",
        f"{API_PREFIX}/schemas/manifest",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
)


class Health(BaseModel):
    status: str
    version: str


meta_router = APIRouter(tags=["meta"])


@meta_router.get("/health", response_model=Health)
def health() -> Health:
    return Health(status="ok", version=__version__)


@meta_router.get("/schemas/manifest", response_model=dict[str, Any])
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema of the model manifest that a submission carries."""
    from validators.manifest import manifest_json_schema

    return manifest_json_schema()


def _error(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _dotted(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts)


def _problem(error: Any) -> Problem:
    if error.get("type") == "json_invalid":
        position = error.get("loc", ("body", "?"))[-1]
        return Problem(
            path="body", message=f"The body is not valid JSON (error at character {position})."
        )
    return Problem(path=_dotted(tuple(error.get("loc", ()))), message=str(error.get("msg", "")))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AssayError)
    async def _assay_error(_request: Request, exc: AssayError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.body(), headers)

    @app.exception_handler(InputInvalid)
    async def _input_invalid(_request: Request, exc: InputInvalid) -> JSONResponse:
        # A document the validators refused (manifest, policy, dataset manifest...), raised
        # anywhere in a request; the request's session has already been rolled back.
        return _error(INPUT_INVALID_STATUS, input_invalid_body(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The caller was authenticated by RequestGuard before FastAPI read the body.
        problems = [_problem(e) for e in exc.errors()]
        body = error_body(
            "invalid", f"The request has {len(problems)} problem(s); see `problems`.", problems
        )
        return _error(422, body)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            detail = "No such endpoint: see /docs for the API."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # GET and POST /models are two routes; Starlette names only the first one's methods.
            allowed = ", ".join(allowed_methods(request.app, request.url.path))
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["Allow"] = allowed
            detail = (
                f"The method {request.method} is not allowed here; allowed: {allowed or 'none'}."
            )
        body = ErrorBody(error=codes.get(exc.status_code, "http_error"), detail=detail)
        return _error(exc.status_code, body, headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        body = ErrorBody(
            error="internal_error",
            detail="The server failed to handle this request; the administrator can find the "
            "cause in the server log.",
        )
        # The server drops the connection after an unhandled exception; saying so keeps a
        # client that reuses connections from meeting a reset on its next request.
        return _error(500, body, {"Connection": "close"})


_ALWAYS_POSSIBLE = (413, 422, 500)
"""Answers any operation can give: RequestGuard's body limit and text checks, and a failure."""


def declare_error_answers(document: dict[str, Any], public_paths: frozenset[str]) -> None:
    """Makes the OpenAPI document list every error status each operation can answer.

    Every error answer is an ErrorBody; FastAPI's own HTTPValidationError is never sent, so it is
    replaced and dropped from the components.
    """
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            statuses = (*_ALWAYS_POSSIBLE, 401) if path not in public_paths else _ALWAYS_POSSIBLE
            for status, declared in error_responses(*statuses).items():
                current = responses.get(str(status), {})
                if current.get("content", {}).get("application/json", {}).get("schema") != ref:
                    responses[str(status)] = {
                        "description": declared["description"],
                        "content": {"application/json": {"schema": ref}},
                    }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in {**error_schema.pop("$defs", {}), "ErrorBody": error_schema}.items():
        schemas.setdefault(name, schema)


def _check_store(app: FastAPI) -> None:
    """Start-up: removes what a crash left behind and logs it (see `registry.doctor`)."""
    from registry.doctor import log_report, logger, reconcile

    try:
        resources = app_resources(app)
        report = reconcile(
            resources.engine, resources.store, quarantine_dir=resources.settings.quarantine_dir
        )
    except Exception:
        # Serving reads matters more than tidying up; `assay doctor` shows the same failure.
        logger.exception("the start-up store check failed; run `assay doctor`")
        return
    log_report(report)


def create_app(settings: Settings | None = None, *, check_schema: bool = True) -> FastAPI:
    """Builds the application for the settings; refuses a database that is behind."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    engine = get_engine(settings)
    if check_schema:
        check_current(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_check_store, app)
        async with periodic_checkpoints(settings, engine):
            yield

    app = FastAPI(
        title="Assay",
        version=__version__,
        description="Local validation and governance registry for medical-imaging AI.",
        lifespan=lifespan,
    )
    store = ArtifactStore(settings.artifacts_dir, settings.tmp_dir)
    install_resources(app, AppResources(settings=settings, engine=engine, store=store))
    install_error_handlers(app)
    app.add_middleware(
        RequestGuard, public_paths=PUBLIC_PATHS, max_json_bytes=settings.max_json_bytes
    )
    api = APIRouter(prefix=API_PREFIX)
    for router in (meta_router, principals_router, vendors_router, catalog_router, audit_router):
        api.include_router(router)
    app.include_router(api)
    _openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declare_error_answers(_openapi(), PUBLIC_PATHS)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serve(*, host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    """Runs the server with uvicorn; raises DatabaseBehind before listening if migrations lag.

    uvicorn's h11 protocol, because only it caps the request head's size, with a deadline for
    reading each head added (`registry.server`); see docs/security.md for the reverse proxy.
    """
    import uvicorn

    from registry.server import protocol_class

    settings = settings or get_settings()
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        http=protocol_class(head_timeout_s=settings.header_timeout_s),
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
