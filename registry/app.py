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
from registry.audit_routes import router as audit_router
from registry.auth import authenticate
from registry.catalog.routes import router as catalog_router
from registry.db import check_current, get_engine
from registry.errors import AssayError, ErrorBody, Problem
from registry.principals.routes import router as principals_router
from registry.settings import Settings, get_settings
from registry.storage import ArtifactStore
from registry.vendors.routes import router as vendors_router

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

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI validates a JSON body before it runs the dependencies; authenticate first so
        # that an unauthenticated caller learns nothing about the body it sent.
        if request.url.path not in PUBLIC_PATHS:
            try:
                await run_in_threadpool(authenticate, request)
            except AssayError as auth_error:
                return _error(auth_error.status, auth_error.body(), {"WWW-Authenticate": "Bearer"})
        problems = [_problem(e) for e in exc.errors()]
        body = ErrorBody(
            error="invalid",
            detail=f"The request has {len(problems)} problem(s); see `problems`.",
            problems=problems,
        )
        return _error(422, body)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            detail = "No such endpoint: see /docs for the API."
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("allow", (exc.headers or {}).get("Allow", ""))
            detail = (
                f"The method {request.method} is not allowed here; allowed: {allowed or 'none'}."
            )
        body = ErrorBody(error=codes.get(exc.status_code, "http_error"), detail=detail)
        return _error(exc.status_code, body, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        body = ErrorBody(
            error="internal_error",
            detail="The server failed to handle this request; the administrator can find the "
            "cause in the server log.",
        )
        return _error(500, body)


def create_app(settings: Settings | None = None, *, check_schema: bool = True) -> FastAPI:
    """Builds the application for the settings; refuses a database that is behind."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    engine = get_engine(settings)
    if check_schema:
        check_current(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="Assay",
        version=__version__,
        description="Local validation and governance registry for medical-imaging AI.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.store = ArtifactStore(settings.artifacts_dir, settings.tmp_dir)
    install_error_handlers(app)
    api = APIRouter(prefix=API_PREFIX)
    for router in (meta_router, principals_router, vendors_router, catalog_router, audit_router):
        api.include_router(router)
    app.include_router(api)
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
