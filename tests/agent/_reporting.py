"""What the reporter's tests share: the fake server's batch path, a client connected to it, a
transport that holds batches back, and a way to note what each caller got."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
import trio.testing

from hodei_agent import HttpControlPlane
from hodei_agent._reporter import SendAlone
from hodei_agent._retry import Unavailable
from hodei_core import LogChunk, Stream, WorkerRegistration
from hodei_core.errors import HodeiError

from ._fake_server import AGENT_TOKEN, FakeServer

Clock = trio.testing.MockClock

REPORTS = "/api/v1/workers/wrk-1/reports"


def chunks(first: int, count: int, size: int = 10) -> list[LogChunk]:
    """``count`` chunks from seq ``first``, each of ``size`` characters: ``"3........."``."""
    seqs = range(first, first + count)
    return [LogChunk(seq, Stream.STDOUT, f"{seq}".ljust(size, "."), 1.0) for seq in seqs]


@asynccontextmanager
async def connected(
    server: FakeServer, transport: httpx.AsyncBaseTransport | None = None, **options: Any
) -> AsyncIterator[HttpControlPlane]:
    """A control plane of the worker ``w1``, registered with ``server`` (through
    ``transport`` if given)."""
    control = HttpControlPlane(
        "http://hodei.test", AGENT_TOKEN, transport=transport or server.transport(), **options
    )
    async with control:
        await control.register(WorkerRegistration(name="w1"))
        yield control


class Held:
    """A transport in front of the fake server that holds the batches of reports until
    ``release``, so that a test decides what waits for the next request."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.released = trio.Event()
        self.holding = 0  # batches held now

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def release(self) -> None:
        self.released.set()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == REPORTS and not self.released.is_set():
            self.holding += 1
            try:
                await self.released.wait()
            finally:
                self.holding -= 1
        return await self.server.handle(request)


def paths(server: FakeServer) -> list[str]:
    """The paths of the reports' requests, in order (registrations left out)."""
    return [r.url.path for r in server.requests if r.url.path != "/api/v1/workers"]


async def outcome_of(
    outcomes: dict[str, BaseException | None],
    name: str,
    call: Callable[..., Awaitable[Any]],
    *args: Any,
) -> None:
    """``await call(*args)``, noting what it raised (None: it returned) under ``name``."""
    try:
        await call(*args)
    except (HodeiError, Unavailable, SendAlone, RuntimeError) as exc:
        outcomes[name] = exc
    else:
        outcomes[name] = None


# -- batches ---------------------------------------------------------------------------------
