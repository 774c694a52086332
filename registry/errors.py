"""Domain errors that carry their HTTP status; one handler in app.py renders them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from validators.problems import InputInvalid


class Problem(BaseModel):
    """One problem in a request, located by its dotted field path."""

    path: str
    message: str


class ErrorBody(BaseModel):
    """The JSON body of every error response."""

    error: str
    detail: str
    problems: list[Problem] = []


MAX_PROBLEMS = 100
"""One answer lists at most this many problems; its detail says how many there were."""


def error_body(code: str, detail: str, problems: list[Problem] | None = None) -> ErrorBody:
    """The error body, its problems cut to MAX_PROBLEMS with the full count in the detail."""
    problems = problems or []
    if len(problems) > MAX_PROBLEMS:
        detail = (
            f"{detail} There are {len(problems)} problems; `problems` lists the first "
            f"{MAX_PROBLEMS}."
        )
        problems = problems[:MAX_PROBLEMS]
    return ErrorBody(error=code, detail=detail, problems=problems)


INPUT_INVALID_STATUS = 422
"""The status of every refused document (`validators.problems.InputInvalid`), whatever its kind."""


def input_invalid_body(exc: InputInvalid) -> ErrorBody:
    """The 422 body of a refused document: its kind's code, a count, and each problem located.

    The validators refuse a document (the model manifest, a policy, a dataset manifest...) with a
    subclass of InputInvalid that names its `code` and `document`; one handler in app.py renders
    every kind through this, so a new kind of document needs no edit in the registry.
    """
    document = exc.document[:1].upper() + exc.document[1:]
    problems = [Problem(path=problem.path, message=problem.message) for problem in exc.problems]
    return error_body(
        exc.code, f"{document} has {len(problems)} problem(s); see `problems`.", problems
    )


class AssayError(Exception):
    """Base of the errors a user can meet; `status` is the HTTP status it maps to."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        problems: list[Problem] | list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.problems = [p if isinstance(p, Problem) else Problem(**p) for p in problems or []]

    def body(self) -> ErrorBody:
        return error_body(self.code, self.detail, self.problems)


class Unauthorized(AssayError):
    status = 401
    code = "unauthorized"


class Forbidden(AssayError):
    status = 403
    code = "forbidden"


class NotFound(AssayError):
    status = 404
    code = "not_found"


class Conflict(AssayError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AssayError):
    status = 413
    code = "payload_too_large"


class Invalid(AssayError):
    status = 422
    code = "invalid"


class InsufficientStorage(AssayError):
    """The disk (or the quota) that holds uploads and artifacts is full."""

    status = 507
    code = "insufficient_storage"


class ServiceUnavailable(AssayError):
    status = 503
    code = "unavailable"


class DatabaseBehind(AssayError):
    """The database schema is older than this code; `assay db upgrade` fixes it."""

    status = 503
    code = "database_behind"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` mapping that declares error bodies in the OpenAPI document."""
    descriptions = {
        401: "Missing, invalid, expired or revoked token.",
        403: "The caller's role may not do this.",
        404: "No such object visible to the caller.",
        409: "The request conflicts with the current state.",
        413: "The body is larger than the route's limit (ASSAY_MAX_JSON_BYTES for JSON bodies, "
        "ASSAY_MAX_ARTIFACT_BYTES for uploads).",
        422: "The request is invalid; `problems` lists each issue with its field path (at most "
        "100; `detail` gives the count).",
        500: "The server failed; the connection is closed (`Connection: close`).",
        503: "The service cannot serve this now.",
        507: "The server's storage is full; nothing was kept.",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}
