"""The request guard: the caller is authenticated before any body is read, every body is capped.

A pure ASGI middleware, in front of FastAPI's routing. For a path that a route serves and that is
not public, it resolves the bearer token first (an unauthenticated caller is answered 401 before a
byte of the body is read, whatever it declares or sends). It then refuses a declared
Content-Length above the route's limit with 413 at once, and counts the bytes as `receive`
delivers them for a chunked body, answering 413 as soon as they pass the limit; only a body within
the limit is ever held in memory. Text that cannot be stored (NUL, lone surrogates) in the path,
the query, the headers or a JSON body, and a JSON body nested too deeply, is refused with 422
before a route sees it.

The limit is ASSAY_MAX_JSON_BYTES unless the route's endpoint declares its own with `body_limit`;
the multipart submission streams its body to disk under its own limits and declares `STREAMED`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from fastapi.routing import iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.auth import ACTOR_SCOPE_KEY, authenticate
from registry.errors import AssayError, Invalid, PayloadTooLarge, Problem
from validators.jsontext import MAX_JSON_DEPTH, json_text_problems, text_problem

STREAMED: Final = "streamed"
"""A route that reads its own body as a stream and enforces its own limits."""

_LIMIT_ATTRIBUTE = "__assay_body_limit__"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
BodyLimit = int | Literal["streamed"]


def body_limit(limit: BodyLimit) -> Callable[[Endpoint], Endpoint]:
    """Declares the endpoint's body limit in bytes (or STREAMED), instead of the JSON default."""
    if limit != STREAMED and (not isinstance(limit, int) or limit <= 0):
        raise ValueError("a body limit is a positive number of bytes or STREAMED")

    def declare(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _LIMIT_ATTRIBUTE, limit)
        return endpoint

    return declare


@dataclass(frozen=True)
class _Route:
    path: str
    pattern: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    methods: frozenset[str]
    endpoint: Callable[..., Any]


def _route_table(app: Any) -> list[_Route]:
    """Every route of the app with its full path pattern, cached until the routes change."""
    routes = app.router.routes
    key = tuple(id(r) for r in routes)
    cached: tuple[tuple[int, ...], list[_Route]] | None = getattr(app.state, "_assay_routes", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    table = []
    for context in iter_route_contexts(routes):
        path = context.path_format or context.path
        if path is None or context.endpoint is None:
            continue
        pattern, _, convertors = compile_path(path)
        table.append(
            _Route(path, pattern, convertors, frozenset(context.methods or ()), context.endpoint)
        )
    app.state._assay_routes = (key, table)
    return table


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in _route_table(app):
        if route.pattern.match(path):
            methods |= route.methods
    return sorted(methods)


def _error_response(error: AssayError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body().model_dump(), status_code=error.status, headers=headers)


def _too_large(limit: int, *, declared: int | None = None) -> PayloadTooLarge:
    what = f"declares {declared} bytes" if declared is not None else "is longer"
    return PayloadTooLarge(
        f"The request body {what}; this endpoint accepts at most {limit} bytes "
        "(ASSAY_MAX_JSON_BYTES, or the endpoint's own limit). Nothing was kept; send a smaller "
        "body."
    )


def _text_problems(scope: Scope, route: _Route | None) -> list[Problem]:
    """Problems with the text of the path, the query string and the headers."""
    problems: list[Problem] = []
    path: str = scope["path"]
    if route is not None and (match := route.pattern.match(path)):
        for name, value in match.groupdict().items():
            if (reason := text_problem(value)) is not None:
                problems.append(Problem(path=name, message=reason))
    elif (reason := text_problem(path)) is not None:
        problems.append(Problem(path="path", message=f"the URL path {reason}"))
    for name, value in QueryParams(scope.get("query_string", b"")).multi_items():
        for text in (name, value):
            if (reason := text_problem(text)) is not None:
                problems.append(Problem(path=name[:100].replace("\x00", "\\u0000"), message=reason))
                break
    for raw_name, raw_value in scope.get("headers", []):
        if b"\x00" in raw_value or b"\x00" in raw_name:
            name = raw_name.decode("latin-1").replace("\x00", "\\u0000")[:100]
            problems.append(
                Problem(
                    path=name,
                    message="the header contains U+0000 NUL, which no header may hold: send the "
                    "value without it",
                )
            )
    return problems


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return True  # FastAPI reads a body without a content type as JSON


def _json_problems(body: bytes) -> list[Problem]:
    """Problems that only the parsed document shows; malformed JSON is left to FastAPI."""
    try:
        document = json.loads(body)
    except RecursionError:
        return [Problem(path="body", message=f"nested more than {MAX_JSON_DEPTH} levels deep")]
    except UnicodeDecodeError:
        return [Problem(path="body", message="The body is not valid JSON text (send UTF-8).")]
    except ValueError:  # not JSON: FastAPI says where
        return []
    return [
        Problem(path=path or "body", message=message)
        for path, message in json_text_problems(document)
    ]


def _declares_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


class RequestGuard:
    """ASGI middleware: authentication first, then the body limit and the text checks."""

    def __init__(self, app: ASGIApp, *, public_paths: frozenset[str], max_json_bytes: int) -> None:
        self.app = app
        self.public_paths = public_paths
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        matching = [r for r in _route_table(scope["app"]) if r.pattern.match(path)]
        route = next((r for r in matching if scope["method"] in r.methods), None)
        try:
            if matching and path not in self.public_paths:
                scope[ACTOR_SCOPE_KEY] = await run_in_threadpool(authenticate, Request(scope))
            if problems := _text_problems(scope, route or (matching[0] if matching else None)):
                raise Invalid(
                    f"The request has {len(problems)} problem(s); see `problems`.",
                    problems=problems,
                )
        except AssayError as error:
            headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
            if _declares_body(scope):
                # The body is left unread; the server will not reuse this connection.
                headers["Connection"] = "close"
            await _error_response(error, headers)(scope, receive, send)
            return

        limit: BodyLimit = self.max_json_bytes
        if route is not None:
            limit = getattr(route.endpoint, _LIMIT_ATTRIBUTE, self.max_json_bytes)
        if limit == STREAMED:
            await self.app(scope, receive, send)
            return
        assert isinstance(limit, int)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            # The body is not read; closing the connection spares the client sending it.
            response = _error_response(
                _too_large(limit, declared=declared), {"Connection": "close"}
            )
            await response(scope, receive, send)
            return
        received = await _read_body(receive, limit)
        if received is None:
            response = _error_response(_too_large(limit), {"Connection": "close"})
            await response(scope, receive, send)
            return
        body, tail = received
        if body and _is_json(scope) and (problems := _json_problems(body)):
            invalid = Invalid(
                f"The request body has {len(problems)} problem(s); see `problems`.",
                problems=problems,
            )
            await _error_response(invalid)(scope, receive, send)
            return
        await self.app(scope, _replay(body, tail, receive), send)


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, list[Message]] | None:
    """The whole body if it is at most `limit` bytes (and any message after it), else None."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks), [message]
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replay(body: bytes, tail: list[Message], receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *tail]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
