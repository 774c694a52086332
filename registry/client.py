"""Typed HTTP client for the Assay API, used by the `assay` CLI, by vendors and by CI pipelines.

This module depends on httpx and pydantic only: vendors and CI install the base package, without
the server's dependencies, so it must never import the rest of `registry` or `validators`.

Response models allow extra fields, so a newer server that adds fields does not break an older
client. Roles and version statuses are closed sets (`Role`, `VersionStatus`): a server that adds a
value is a new contract, and this client says so (`UnexpectedResponse`) instead of guessing.
Errors come back as `AssayError` subclasses that carry the server's `detail` and the `problems` it
listed (each `{"path": ..., "message": ...}`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Generic, Literal, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "API_PREFIX",
    "DEFAULT_URL",
    "AssayClient",
    "AssayError",
    "AuditEvent",
    "AuditVerification",
    "Conflict",
    "Forbidden",
    "Health",
    "Invalid",
    "Me",
    "Model",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Role",
    "ServerError",
    "Token",
    "TokenCreated",
    "Unauthorized",
    "UnexpectedResponse",
    "Unreachable",
    "Vendor",
    "Version",
    "VersionStatus",
]

DEFAULT_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
CLIENT_VERSION = "0.1.0"
# The server inspects an artifact (format, operators, shapes) before it answers a submission, so
# waiting for that answer may take longer than an ordinary request.
SUBMIT_READ_TIMEOUT = 300.0

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes sent so far, total bytes) while an artifact uploads."""


# --- errors ------------------------------------------------------------------------------------


class AssayError(Exception):
    """An error answered by the server (or met on the way to it), with its detail and problems."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        problems: list[dict[str, Any]] | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        self.problems: list[dict[str, Any]] = list(problems or [])
        super().__init__(detail)

    def __str__(self) -> str:
        lines = [self.detail]
        lines.extend(f"  {_problem_text(problem)}" for problem in self.problems)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Returns the error as the JSON document the server sent (plus the HTTP status)."""
        return {
            "status": self.status,
            "error": self.error,
            "detail": self.detail,
            "problems": self.problems,
        }


class Unauthorized(AssayError):
    """401: the token is missing, invalid, expired or revoked."""


class Forbidden(AssayError):
    """403: the caller's role may not do this."""


class NotFound(AssayError):
    """404: no such object, or not one the caller may see."""


class Conflict(AssayError):
    """409: the request conflicts with the current state (for example, already registered)."""


class PayloadTooLarge(AssayError):
    """413: the upload is larger than the server accepts."""


class Invalid(AssayError):
    """422: the request is invalid; `problems` lists each issue with its field path."""


class ServerError(AssayError):
    """5xx: the server failed or cannot serve the request now."""


class UnexpectedResponse(AssayError):
    """The server answered with something this client cannot read (not the Assay API?)."""


class Unreachable(AssayError):
    """The server could not be reached: connection refused, timeout, DNS failure..."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        detail = (
            f"could not reach the Assay server at {url} ({reason}); check --url or ASSAY_URL "
            "and that `assay serve` is running there"
        )
        super().__init__(0, "unreachable", detail)


_ERRORS_BY_STATUS: dict[int, type[AssayError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Invalid,
}


def _problem_text(problem: Mapping[str, Any]) -> str:
    path = problem.get("path")
    message = problem.get("message", "")
    return f"{path}: {message}" if path else str(message)


def _error_from_response(response: httpx.Response) -> AssayError:
    """Returns the exception for an error response, reading the server's error body."""
    status = response.status_code
    error = f"http_{status}"
    detail = ""
    problems: list[dict[str, Any]] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = str(body.get("error") or error)
        raw_detail = body.get("detail")
        if isinstance(raw_detail, list):
            # FastAPI's own validation body: {"detail": [{"loc": [...], "msg": ...}]}.
            problems = [
                {
                    "path": ".".join(str(part) for part in item.get("loc", [])),
                    "message": str(item.get("msg", "")),
                }
                for item in raw_detail
                if isinstance(item, dict)
            ]
            detail = "the request was invalid"
        elif raw_detail is not None:
            detail = str(raw_detail)
        raw_problems = body.get("problems")
        if isinstance(raw_problems, list):
            problems = [p for p in raw_problems if isinstance(p, dict)] or problems
    if not detail:
        text = response.text.strip()
        reason = response.reason_phrase or "error"
        detail = f"the server answered {status} {reason}" + (f": {text[:200]}" if text else "")
    if status >= 500:
        cls: type[AssayError] = ServerError
    else:
        cls = _ERRORS_BY_STATUS.get(status, AssayError)
    return cls(status, error, detail, problems)


# --- response models ---------------------------------------------------------------------------


class _Resource(BaseModel):
    # extra="allow": fields added by a newer server are kept, not refused.
    # protected_namespaces=(): `model_id` is a field here, not a pydantic method.
    model_config = ConfigDict(extra="allow", protected_namespaces=())


T = TypeVar("T", bound=BaseModel)


class Page(_Resource, Generic[T]):
    """One page of a list: `data` is the page, `count` the total number of matching objects."""

    data: list[T]
    count: int


Role = Literal["admin", "reviewer", "vendor", "ci", "monitor"]
"""A principal's role, as the server names it."""

VersionStatus = Literal[
    "submitted",
    "validating",
    "validated",
    "failed",
    "error",
    "approved",
    "rejected",
    "deployed",
    "suspended",
    "retired",
]
"""A version's place in the lifecycle (DESIGN.md), as the server names it."""


# Each model below mirrors one schema of the server's OpenAPI document: the same fields, types and
# enums, and it accepts every answer that schema allows. A field the server always sends may still
# have a default here (None for "not sent"), so the client also reads a partial or older answer.
# tests/registry/test_client_contract.py checks this against the server's document.


class Health(_Resource):
    status: str
    version: str | None = None


class Me(_Resource):
    id: str
    name: str
    role: Role
    vendor_id: str | None = None
    vendor_name: str | None = None
    token_id: str | None = None


class Vendor(_Resource):
    id: str
    name: str
    display_name: str | None = None
    created_at: datetime | None = None


class TokenCreated(_Resource):
    """A new token; `token` is the secret, shown this once and never again."""

    id: str
    token: str
    principal_id: str | None = None
    name: str
    role: Role
    vendor_id: str | None = None
    expires_at: datetime | None = None


class Token(_Resource):
    id: str
    principal_id: str | None = None
    name: str
    role: Role
    vendor_id: str | None = None
    prefix: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class Model(_Resource):
    id: str
    vendor_id: str
    name: str
    description: str | None = None
    created_at: datetime | None = None
    version_count: int = 0


class Version(_Resource):
    id: str
    model_id: str
    number: int
    version_label: str | None = None
    digest: str
    status: VersionStatus
    format: str | None = None
    size_bytes: int | None = None
    intake_report: dict[str, Any] = {}
    manifest: dict[str, Any] = {}
    submitted_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class AuditEvent(_Resource):
    seq: int
    # The server sends the exact string that was hashed (ISO-8601 UTC with microseconds and a
    # `Z`) and declares it a plain string, not a date-time; it is kept as sent.
    at: str
    actor_id: str | None = None
    actor_name: str | None = None
    action: str
    object_type: str | None = None
    object_id: str | None = None
    payload: dict[str, Any] = {}
    prev_hash: str | None = None
    hash: str


class AuditVerification(_Resource):
    ok: bool
    length: int
    head: str | None
    first_broken_seq: int | None = None
    reason: str | None = None
    expected_head: str | None = None
    grown_since_expected: int | None = None
    checkpoints_verified: int | None = None
    broken_checkpoint: int | None = None
    events_after_last_checkpoint: int | None = None


# --- upload ------------------------------------------------------------------------------------


class _ProgressReader:
    """A binary file wrapper that reports how far httpx has read it; reads stay chunked."""

    def __init__(self, file: IO[bytes], total: int, callback: ProgressCallback) -> None:
        self._file = file
        self._total = total
        self._callback = callback
        self.name = getattr(file, "name", "artifact")

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._callback(self._file.tell(), self._total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


# --- the client --------------------------------------------------------------------------------


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


class AssayClient:
    """A client for one Assay server; use it as a context manager so the connection is closed.

    >>> with AssayClient("https://assay.hospital.example", token=os.environ["ASSAY_TOKEN"]) as c:
    ...     print(c.me().role)
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._token = token
        self._owns_http = True
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"assay-client/{CLIENT_VERSION}"},
        )

    @classmethod
    def from_httpx(cls, client: httpx.Client, token: str | None = None) -> AssayClient:
        """Returns a client that sends its requests through an existing `httpx.Client`.

        Useful with `starlette.testclient.TestClient`. The caller keeps ownership: closing this
        client does not close `client`.
        """
        instance = cls.__new__(cls)
        instance._timeout = 30.0
        instance._token = token
        instance._owns_http = False
        instance._http = client
        return instance

    @property
    def url(self) -> str:
        """The server's base URL, as requests are sent to it."""
        return str(self._http.base_url).rstrip("/")

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing --

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: tuple[float, float, float, float] | None = None,
    ) -> httpx.Response:
        request_headers = {"Accept": "application/json"}
        if self._token:
            request_headers["Authorization"] = f"Bearer {self._token}"
        request_headers.update(headers or {})
        # Only keyword arguments that were given are passed on, so `from_httpx` also accepts
        # clients that follow httpx's API without being httpx (starlette's TestClient on httpx2).
        options: dict[str, Any] = {"params": _drop_none(params or {}), "headers": request_headers}
        if json_body is not None:
            options["json"] = json_body
        if data is not None:
            options["data"] = data
        if files is not None:
            options["files"] = files
        if timeout is not None:
            options["timeout"] = timeout
        try:
            response = self._http.request(method, API_PREFIX + path, **options)
        except httpx.TimeoutException as exc:
            raise Unreachable(self.url, f"timed out: {exc}" if str(exc) else "timed out") from exc
        except httpx.TransportError as exc:
            raise Unreachable(self.url, str(exc) or type(exc).__name__) from exc
        if response.status_code >= 400:
            raise _error_from_response(response)
        return response

    @staticmethod
    def _read(model: type[T], response: httpx.Response) -> T:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise UnexpectedResponse(
                response.status_code,
                "unexpected_response",
                f"the server's answer to {response.request.method} {response.request.url.path} "
                f"is not the {model.__name__} this client expects; is the URL an Assay server "
                f"of a compatible version? ({str(exc).splitlines()[0]})",
            ) from exc

    def _page(self, item: type[T], path: str, limit: int, offset: int) -> Page[T]:
        response = self._request("GET", path, params={"limit": limit, "offset": offset})
        return self._read(Page[item], response)  # type: ignore[valid-type]

    # -- public API --

    def health(self) -> Health:
        """Returns the server's health and version (no token needed)."""
        return self._read(Health, self._request("GET", "/health"))

    def me(self) -> Me:
        """Returns who the token belongs to: principal, role and vendor."""
        return self._read(Me, self._request("GET", "/me"))

    def create_vendor(self, name: str, display_name: str | None = None) -> Vendor:
        """Returns the new vendor (admin only)."""
        body = _drop_none({"name": name, "display_name": display_name})
        return self._read(Vendor, self._request("POST", "/vendors", json_body=body))

    def list_vendors(self, limit: int = 100, offset: int = 0) -> Page[Vendor]:
        """Returns one page of vendors."""
        return self._page(Vendor, "/vendors", limit, offset)

    def create_token(
        self,
        role: str,
        name: str,
        vendor_id: str | None = None,
        expires_at: datetime | str | None = None,
    ) -> TokenCreated:
        """Returns the new token, whose secret `token` the server shows only this once."""
        body = _drop_none(
            {"role": role, "name": name, "vendor_id": vendor_id, "expires_at": _iso(expires_at)}
        )
        return self._read(TokenCreated, self._request("POST", "/tokens", json_body=body))

    def list_tokens(self, limit: int = 100, offset: int = 0) -> Page[Token]:
        """Returns one page of tokens (their prefixes, never their secrets)."""
        return self._page(Token, "/tokens", limit, offset)

    def revoke_token(self, token_id: str) -> Token:
        """Returns the token, now revoked."""
        return self._read(Token, self._request("DELETE", f"/tokens/{token_id}"))

    def create_model(
        self, name: str, vendor_id: str | None = None, description: str | None = None
    ) -> Model:
        """Returns the new model; a vendor creates in its own namespace, an admin names one."""
        body = _drop_none({"name": name, "vendor_id": vendor_id, "description": description})
        return self._read(Model, self._request("POST", "/models", json_body=body))

    def list_models(self, limit: int = 100, offset: int = 0) -> Page[Model]:
        """Returns one page of the models the caller may see."""
        return self._page(Model, "/models", limit, offset)

    def get_model(self, model_id: str) -> Model:
        """Returns one model."""
        return self._read(Model, self._request("GET", f"/models/{model_id}"))

    def submit_version(
        self,
        model_id: str,
        artifact: Path | str,
        manifest: Path | str | Mapping[str, Any],
        idempotency_key: str | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        read_timeout: float = SUBMIT_READ_TIMEOUT,
    ) -> Version:
        """Returns the new version after uploading `artifact` with its `manifest`.

        The artifact is streamed from disk in chunks, never read whole into memory. `manifest` is a
        path to the manifest JSON file or the manifest itself as a mapping. Give the same
        `idempotency_key` when retrying an upload whose answer was lost, so the server does not
        register it twice. `read_timeout` bounds the wait for the server's intake report once the
        upload is sent.
        """
        if isinstance(manifest, Mapping):
            manifest_text = json.dumps(manifest)
        else:
            manifest_text = Path(manifest).read_text(encoding="utf-8")
        artifact_path = Path(artifact)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        # (connect, read, write, pool): only the wait for the answer is longer.
        timeout = (self._timeout, max(self._timeout, read_timeout), self._timeout, self._timeout)
        with artifact_path.open("rb") as file:
            total = os.fstat(file.fileno()).st_size
            upload: Any = _ProgressReader(file, total, on_progress) if on_progress else file
            response = self._request(
                "POST",
                f"/models/{model_id}/versions",
                data={"manifest": manifest_text},
                files={"artifact": (artifact_path.name, upload, "application/octet-stream")},
                headers=headers,
                timeout=timeout,
            )
        return self._read(Version, response)

    def list_versions(self, model_id: str, limit: int = 100, offset: int = 0) -> Page[Version]:
        """Returns one page of a model's versions."""
        return self._page(Version, f"/models/{model_id}/versions", limit, offset)

    def get_version(self, version_id: str) -> Version:
        """Returns one version, with its status and intake report."""
        return self._read(Version, self._request("GET", f"/versions/{version_id}"))

    def audit_events(self, limit: int = 100, offset: int = 0) -> Page[AuditEvent]:
        """Returns one page of the audit trail (admin and reviewer)."""
        return self._page(AuditEvent, "/audit", limit, offset)

    def audit_verify(self, expect_head: str | None = None) -> AuditVerification:
        """Returns the server's verification of the audit hash chain (and of its head, if given)."""
        response = self._request("GET", "/audit/verify", params={"expect_head": expect_head})
        return self._read(AuditVerification, response)

    def manifest_schema(self) -> dict[str, Any]:
        """Returns the JSON Schema of the model manifest."""
        response = self._request("GET", "/schemas/manifest")
        try:
            schema = response.json()
        except ValueError as exc:
            raise UnexpectedResponse(
                response.status_code, "unexpected_response", "the manifest schema is not JSON"
            ) from exc
        if not isinstance(schema, dict):
            raise UnexpectedResponse(
                response.status_code, "unexpected_response", "the manifest schema is not an object"
            )
        return schema
