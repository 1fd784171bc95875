"""``HttpControlPlane``: the ``ControlPlane`` port over the HTTP agent protocol (docs/http.md).

Each call maps its answer back to the domain: a stale attempt is ``StaleAttempt``, a job
cancelled meanwhile ``JobAlreadyFinished``, a job the server does not know ``JobNotFound``, so
that the worker loop drops such jobs as it does in-process. When the server cannot be reached,
or answers 5xx or 429, calls are tried again with capped, jittered backoff; log chunks and
final results wait in the ``Outbox`` meanwhile. Tokens and registering again are the
``Session``'s.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from types import TracebackType
from urllib.parse import quote

import httpx
import trio

from hodei_core import LogChunk, Outcome, Worker, WorkerRegistration
from hodei_core.errors import HodeiError
from hodei_core.ports import Instructions

from ._answers import agent_version, check
from ._outbox import Key, Outbox, report_size
from ._reporter import Reporter, SendAlone
from ._retry import Backoff, Link, Unavailable, retrying
from ._session import WORKER, Session
from ._wire import (
    Registered,
    chunks_json,
    finish_json,
    heartbeat_from,
    instructions_from,
    report_json,
    running_json,
    start_json,
)

__all__ = ["HttpControlPlane"]

_MIB = 1024 * 1024
_SMALLEST_CUT = 256  # a chunk the server refuses is halved down to this, then given up


class HttpControlPlane:
    """The server as one agent sees it, over HTTP; use it as an async context manager.

    The worker id given to each call is ignored: the control plane uses the id of its last
    registration, which changes if the server forgot the worker and it registered again.

    Args:
        server: the server's base URL (``http://host:8080``).
        token: the agent registration token.
        transport: an httpx transport; tests pass ``httpx.MockTransport``.
        backoff_base_s: the first retry waits up to this long.
        backoff_cap_s: no retry waits longer.
        outbox_bytes: how much undelivered output to keep while the server is unavailable.
        connect_timeout_s: how long to wait for a connection.
        request_timeout_s: how long to wait for any answer other than a long-poll's.
        random: a number in ``[0, 1)`` for the jitter; tests pass a fixed one.
    """

    def __init__(
        self,
        server: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 10.0,
        outbox_bytes: int = 64 * _MIB,
        connect_timeout_s: float = 5.0,
        request_timeout_s: float = 30.0,
        random: Callable[[], float] = random.random,
    ) -> None:
        self._backoff_args = (backoff_base_s, backoff_cap_s, random)
        self._outbox_bytes = outbox_bytes
        self._link = Link()
        self._client = httpx.AsyncClient(
            base_url=server.rstrip("/"),
            transport=transport,
            headers={"User-Agent": f"hodei-agent/{agent_version()}"},
        )
        #: the agent's tokens and registration
        self.session = Session(
            self._client,
            token,
            link=self._link,
            backoff=self._backoff,
            held=self._held,
            timeouts=(connect_timeout_s, request_timeout_s),
        )
        # poll and heartbeat keep their schedule across calls: the worker loop calls them
        # again and again, and each new call must not start over with the shortest delays
        self._poll_backoff = self._backoff()
        self._heartbeat_backoff = self._backoff()
        self._reported: set[Key] = set()  # what the loop said it runs, in its last call
        self._started: set[Key] = set()  # attempts started and not yet finished
        self._poll_scope: trio.CancelScope | None = None
        self._stack = contextlib.AsyncExitStack()
        self._nursery: trio.Nursery | None = None
        self._outbox: Outbox | None = None
        self._reporter: Reporter | None = None

    def _backoff(self) -> Backoff:
        base, cap, rand = self._backoff_args
        return Backoff(base, cap, rand)

    async def __aenter__(self) -> HttpControlPlane:
        await self._stack.enter_async_context(self._client)
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._reporter = Reporter(self.session, self._nursery)
        self._outbox = Outbox(
            self._send_report,
            self._nursery,
            self._link,
            max_bytes=self._outbox_bytes,
            backoff=self._backoff,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop sending and close the connections. Reports not delivered by then are lost:
        ``leave`` first, which waits for them."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        await self._stack.aclose()

    @property
    def worker(self) -> Worker:
        """The worker, as last registered."""
        return self.session.worker

    @property
    def registered(self) -> Registered | None:
        """The last registration's answer: the worker, its token, the pace the server asks
        for (None before the first)."""
        return self.session.registered

    @property
    def outbox(self) -> Outbox:
        """Reports on their way to the server."""
        if self._outbox is None:
            raise RuntimeError("use HttpControlPlane as an async context manager")
        return self._outbox

    @property
    def reporter(self) -> Reporter:
        """Sends starts and small reports in batches."""
        if self._reporter is None:
            raise RuntimeError("use HttpControlPlane as an async context manager")
        return self._reporter

    def _held(self) -> set[Key]:
        return self._reported | self._started | self.outbox.attempts()

    async def register(self, registration: WorkerRegistration) -> Worker:
        """Create or update the worker record for this name; waits for the server if it
        cannot be reached.

        Raises:
            Refused: the server refused the agent token or the registration.
        """
        return await self.session.register(registration)

    # -- the worker's calls -----------------------------------------------------------------

    async def heartbeat(self, worker_id: str, running: Sequence[tuple[str, int]]) -> Instructions:
        """Say the worker is alive; tried until the server answers."""
        self._reported = set(running)

        async def once() -> Instructions:
            response = await self.session.worker_call(
                f"/api/v1/workers/{WORKER}/heartbeat",
                running_json(running),
                again_on=(401, 403, 404),
            )
            return heartbeat_from(check(response, "heartbeat"))

        return await retrying(once, self._heartbeat_backoff, self._link, "heartbeat")

    async def poll(
        self, worker_id: str, running: Sequence[tuple[str, int]], timeout_s: float
    ) -> Instructions:
        """Long-poll for instructions; empty ones after ``timeout_s``, also when the server
        could not be reached meanwhile, or when ``interrupt_poll`` is called."""
        self._reported = set(running)
        body = running_json(running)
        deadline = trio.current_time() + timeout_s

        async def once() -> Instructions:
            wait = max(0.0, deadline - trio.current_time())
            response = await self.session.worker_call(
                f"/api/v1/workers/{WORKER}/poll",
                body,
                again_on=(401, 403, 404),
                params={"wait": round(wait, 3)},
                long_poll_s=wait,
            )
            if response.status_code == 204:
                return Instructions()
            return instructions_from(check(response, "poll"))

        scope = self._poll_scope = trio.CancelScope()
        with scope:
            try:
                return await retrying(
                    once, self._poll_backoff, self._link, "poll", deadline=deadline
                )
            except Unavailable:
                return Instructions()
            finally:
                self._poll_scope = None
        return Instructions()  # interrupted

    def interrupt_poll(self) -> None:
        """Make a waiting ``poll`` return empty instructions now."""
        if self._poll_scope is not None:
            self._poll_scope.cancel()

    async def start(self, worker_id: str, job_id: str, attempt: int) -> None:
        """The attempt started; tried until the server answers.

        Raises:
            StaleAttempt, JobAlreadyFinished, JobNotFound: the attempt is not this worker's.
            Refused: the server refused the report itself.
        """
        key = (job_id, attempt)
        self._started.add(key)

        async def once() -> None:
            try:
                await self.reporter.send(start_json(job_id, attempt), key, report_size(()))
                return
            except SendAlone:
                pass
            response = await self.session.worker_call(
                f"/api/v1/jobs/{quote(job_id, safe='')}/start", {"attempt": attempt}
            )
            check(response, "start", key)

        try:
            await retrying(once, self._backoff(), self._link, f"start of job {job_id}")
        except HodeiError:
            self._started.discard(key)
            raise

    async def append_logs(
        self, worker_id: str, job_id: str, attempt: int, chunks: Sequence[LogChunk]
    ) -> None:
        """Send output of the attempt (kept and sent later while the server is unavailable).

        Raises:
            StaleAttempt, JobAlreadyFinished, JobNotFound: the attempt is not this worker's.
        """
        await self.outbox.put((job_id, attempt), chunks)

    async def finish(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        chunks: Sequence[LogChunk] = (),
    ) -> None:
        """Send the attempt's final result (kept and sent later while the server is
        unavailable).

        Raises:
            StaleAttempt, JobAlreadyFinished, JobNotFound: the attempt is not this worker's.
        """
        key = (job_id, attempt)
        try:
            await self.outbox.put(key, chunks, outcome)
        finally:
            self._started.discard(key)
            self._reported.discard(key)

    async def leave(self, worker_id: str) -> None:
        """Deliver what the outbox holds, then go offline; tried until the server answers."""
        await self.outbox.wait_empty()
        await retrying(self._leave_once, self._backoff(), self._link, "leave")

    async def _leave_once(self) -> None:
        response = await self.session.worker_call(f"/api/v1/workers/{WORKER}/leave", {})
        if response.status_code != 404:  # a worker the server forgot has left already
            check(response, "leave")

    async def leave_now(self) -> None:
        """Go offline at once, without delivering what the outbox holds, trying only once
        (for an agent stopped in a hurry)."""
        if self.session.registered is not None:
            with contextlib.suppress(Unavailable, HodeiError):
                await self._leave_once()

    async def request_drain(self) -> None:
        """Ask the server to give this worker no new jobs, and to say ``drain`` to its poll;
        tried until the server answers. Nothing to do before the worker is registered."""
        if self.session.registered is None:
            return

        async def once() -> None:
            response = await self.session.request(
                f"/api/v1/workers/{WORKER}/drain", None, as_worker=False
            )
            if response.status_code != 409:  # already offline: nothing to drain
                check(response, "drain")

        await retrying(once, self._backoff(), self._link, "drain")

    # -- reports, for the outbox ------------------------------------------------------------

    async def _send_report(
        self, key: Key, chunks: Sequence[LogChunk], outcome: Outcome | None
    ) -> None:
        job_id, attempt = key
        try:
            body = report_json(job_id, attempt, chunks, outcome)
            await self.reporter.send(body, key, report_size(chunks))
            return
        except SendAlone:
            pass
        path = f"/api/v1/jobs/{quote(job_id, safe='')}"
        if outcome is None:
            await self._send_logs(path, key, chunks)
            return
        response = await self.session.worker_call(
            f"{path}/finish", finish_json(attempt, outcome, chunks)
        )
        if response.status_code == 413 and chunks:
            # too large with its output: the output first, in pieces the server takes
            await self._send_logs(path, key, chunks)
            body = finish_json(attempt, outcome, ())
            response = await self.session.worker_call(f"{path}/finish", body)
        check(response, "finish", key)

    async def _send_logs(self, path: str, key: Key, chunks: Sequence[LogChunk]) -> None:
        body = {"attempt": key[1], "chunks": chunks_json(chunks)}
        response = await self.session.worker_call(f"{path}/logs", body)
        if response.status_code != 413:
            check(response, "logs", key)
        elif len(chunks) > 1:
            half = len(chunks) // 2
            await self._send_logs(path, key, chunks[:half])
            await self._send_logs(path, key, chunks[half:])
        elif len(chunks[0].data) > _SMALLEST_CUT:
            chunk = chunks[0]
            data = chunk.data[: len(chunk.data) // 2] + "\n[hodei: output cut: too large]\n"
            await self._send_logs(path, key, [LogChunk(chunk.seq, chunk.stream, data, chunk.ts)])
        else:
            check(response, "logs", key)
