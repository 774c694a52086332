"""The HTTP/1.1 protocol `assay serve` runs: uvicorn's h11 with a request-head size and time limit.

uvicorn caps the size of a request head only with its h11 protocol (`h11_max_incomplete_event_size`;
httptools has no cap) and has no timeout at all for reading one: a client that sends a header a
byte at a time, or never finishes it, held a connection (and, without the cap, memory) for as long
as it liked. `GuardedH11Protocol` arms a timer whenever the connection waits for a request head
(when it opens, and after each response) and disarms it once a complete head has arrived; when the
timer fires, a client that sent part of a head gets 408 and the connection is closed. A head larger
than the cap gets 431. Both answers carry the registry's JSON error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from registry.errors import ErrorBody


def _error_response(status: int, reason: bytes, body: ErrorBody) -> tuple[h11.Response, bytes]:
    payload = json.dumps(body.model_dump()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    return h11.Response(status_code=status, headers=headers, reason=reason), payload


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request head and a JSON 431 and 408.

    The deadline is the class attribute `head_timeout_s`, set by `protocol_class`: uvicorn builds
    each connection's protocol with a fixed signature.
    """

    head_timeout_s: float = 5.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._max_head_bytes = config.h11_max_incomplete_event_size

    # --- the head deadline ------------------------------------------------------------------

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_deadline_passed)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _head_deadline_passed(self) -> None:
        self._head_deadline = None
        if not self._waiting_for_head():
            return
        started, _closed = self.conn.trailing_data
        if started and self.conn.our_state is h11.IDLE:
            seconds = f"{self.head_timeout_s:g}"
            self._send_error_and_close(
                408,
                ErrorBody(
                    error="request_timeout",
                    detail=f"The request head (request line and headers) did not arrive within "
                    f"{seconds} s; the connection is closed. Send the whole head at once.",
                ),
            )
            return
        # Nothing of a new request arrived: an idle connection is closed without a word, as
        # uvicorn's own keep-alive timeout does.
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()

    # --- uvicorn's hooks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may already have been read; otherwise the next head is awaited.
        if self._waiting_for_head():
            self._arm_head_deadline()
        else:
            self._disarm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """Answers a request h11 refused: 431 when its head outgrew the cap, 400 otherwise."""
        self._disarm_head_deadline()
        pending, _closed = self.conn.trailing_data
        if self._max_head_bytes is not None and len(pending) > self._max_head_bytes:
            limit_kib = self._max_head_bytes // 1024
            self._send_error_and_close(
                431,
                ErrorBody(
                    error="request_header_too_large",
                    detail=f"The request head (request line and headers) is larger than "
                    f"{limit_kib} KiB; the connection is closed. Send smaller headers.",
                ),
            )
            return
        self._send_error_and_close(
            400,
            ErrorBody(
                error="bad_request",
                detail="The request is not valid HTTP/1.1; the connection is closed.",
            ),
        )

    def _send_error_and_close(self, status: int, body: ErrorBody) -> None:
        reason = {
            400: b"Bad Request",
            408: b"Request Timeout",
            431: b"Request Header Fields Too Large",
        }
        response, payload = _error_response(status, reason[status], body)
        try:
            self.transport.write(self.conn.send(response) or b"")
            self.transport.write(self.conn.send(h11.Data(data=payload)) or b"")
            self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            pass  # a response was already under way; closing is all that is left
        self.transport.close()


def protocol_class(*, head_timeout_s: float) -> type[GuardedH11Protocol]:
    """A `GuardedH11Protocol` subclass with the given head deadline, to pass as uvicorn's `http`."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"head_timeout_s": head_timeout_s, "__module__": __name__},
    )
