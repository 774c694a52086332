"""Bounds how many submissions are inspected and recorded at once, on threads of their own.

An intake's blocking work (the inspection child process, which can use gigabytes, and the
recording transaction) used to run on the shared default thread pool, so ten intakes at once took
5.7 GB and kept `GET /health` waiting for a thread. Here each intake first takes one of
`ASSAY_MAX_CONCURRENT_INTAKES` slots, waiting in arrival order for at most `ASSAY_INTAKE_WAIT_S`
seconds, then runs on a thread limiter reserved for intakes; the default pool stays free for
health, authentication and reads.

The slot is taken after the body has been received: a slow upload never holds a slot, so one slow
client cannot keep the others from being inspected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from registry.errors import ServiceUnavailable

T = TypeVar("T")


class IntakeBusy(ServiceUnavailable):
    """Every intake slot stayed taken for the whole wait; the client should retry later."""

    code = "busy"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class IntakeGate:
    """At most `capacity` intakes run at once; the others queue in order for `wait_s` seconds."""

    def __init__(self, *, capacity: int, wait_s: float) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self._slots = anyio.CapacityLimiter(capacity)
        # Only slot holders reach it, so it is never contended; it keeps intakes off the
        # default thread pool.
        self._threads = anyio.CapacityLimiter(capacity)

    @property
    def running(self) -> int:
        return int(self._slots.borrowed_tokens)

    @property
    def waiting(self) -> int:
        return self._slots.statistics().tasks_waiting

    async def run(self, work: Callable[[], T]) -> T:
        """Runs `work` in an intake thread once a slot is free; raises IntakeBusy on timeout."""
        borrower = object()
        try:
            self._slots.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            with anyio.move_on_after(self.wait_s):
                await self._slots.acquire_on_behalf_of(borrower)
            if borrower not in self._slots.statistics().borrowers:
                retry_after = max(1, math.ceil(self.wait_s))
                raise IntakeBusy(
                    f"All {self.capacity} intake slots (ASSAY_MAX_CONCURRENT_INTAKES) stayed busy "
                    f"for {self.wait_s:g} s (ASSAY_INTAKE_WAIT_S); nothing was registered. Send "
                    f"the submission again in about {retry_after} s.",
                    retry_after_s=retry_after,
                ) from None
        try:
            return await anyio.to_thread.run_sync(work, limiter=self._threads)
        finally:
            self._slots.release_on_behalf_of(borrower)
