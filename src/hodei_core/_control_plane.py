"""The in-process ControlPlane: a worker loop talking to the services directly, no network."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from types import TracebackType

import trio

from ._models import LogChunk, Outcome, Worker, WorkerRegistration
from ._orchestrator import Orchestrator
from ._workers import WorkerManagement
from .events import Event
from .ports import EventBus, Instructions

__all__ = ["InProcessControlPlane"]

# The bus may drop events: a waiting poll looks at the store this often regardless.
_RECHECK_S = 1.0


class InProcessControlPlane:
    """The ``ControlPlane`` of workers embedded in the engine's own process.

    The long-poll wakes on the worker's bus topics, exactly as the server's HTTP long-poll does.
    Each worker's subscription (its inbox) stays open from its first poll until it leaves or
    the control plane is closed, rather than being opened for every poll: a poll then costs a
    store read, not a subscription. Use it as an async context manager (or call ``aclose``).
    """

    def __init__(
        self, orchestrator: Orchestrator, workers: WorkerManagement, bus: EventBus
    ) -> None:
        self._orchestrator = orchestrator
        self._workers = workers
        self._bus = bus
        self._inboxes: dict[
            str, tuple[contextlib.AsyncExitStack, trio.MemoryReceiveChannel[Event]]
        ] = {}

    async def __aenter__(self) -> InProcessControlPlane:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every worker's inbox."""
        while self._inboxes:
            _, (stack, _) = self._inboxes.popitem()
            with trio.CancelScope(shield=True):
                await stack.aclose()

    async def _inbox(self, worker_id: str) -> trio.MemoryReceiveChannel[Event]:
        entry = self._inboxes.get(worker_id)
        if entry is None:
            stack = contextlib.AsyncExitStack()
            inbox = await stack.enter_async_context(self._bus.subscribe(f"workers.{worker_id}.>"))
            entry = self._inboxes[worker_id] = (stack, inbox)
        return entry[1]

    async def register(self, registration: WorkerRegistration) -> Worker:
        worker, _ = await self._workers.register(registration)
        return worker

    async def heartbeat(self, worker_id: str, running: Sequence[tuple[str, int]]) -> Instructions:
        return await self._workers.heartbeat(worker_id, running)

    async def poll(
        self, worker_id: str, running: Sequence[tuple[str, int]], timeout_s: float
    ) -> Instructions:
        await trio.lowlevel.checkpoint()  # a worker polling in a loop must let others run
        inbox = await self._inbox(worker_id)  # subscribed before the store is read
        deadline = trio.current_time() + timeout_s
        while True:
            # What arrived while the worker was busy only says "look again", as the store read
            # below does: drop it, so that it does not wake the next wait for nothing.
            with contextlib.suppress(trio.WouldBlock):
                while True:
                    inbox.receive_nowait()
            worker = await self._workers.get(worker_id)
            instructions = await self._workers.instructions(worker, running)
            if instructions.jobs or instructions.cancel or instructions.drain:
                return instructions
            now = trio.current_time()
            if now >= deadline:
                return instructions
            with trio.move_on_at(min(deadline, now + _RECHECK_S)):
                await inbox.receive()

    async def start(self, worker_id: str, job_id: str, attempt: int) -> None:
        await self._orchestrator.start(worker_id, job_id, attempt)

    async def append_logs(
        self, worker_id: str, job_id: str, attempt: int, chunks: Sequence[LogChunk]
    ) -> None:
        await self._orchestrator.append_logs(worker_id, job_id, attempt, chunks)

    async def finish(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        chunks: Sequence[LogChunk] = (),
    ) -> None:
        await self._orchestrator.finish(worker_id, job_id, attempt, outcome, chunks)

    async def leave(self, worker_id: str) -> None:
        await self._workers.leave(worker_id)
        entry = self._inboxes.pop(worker_id, None)
        if entry is not None:
            await entry[0].aclose()
