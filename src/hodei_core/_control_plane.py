"""The in-process ControlPlane: a worker loop talking to the services directly, no network."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ._models import LogChunk, Outcome, Worker, WorkerRegistration
from ._orchestrator import Orchestrator
from ._workers import WorkerManagement
from .ports import EventBus, Instructions

__all__ = ["InProcessControlPlane"]


class InProcessControlPlane:
    """The ``ControlPlane`` of workers embedded in the engine's own process.

    The long-poll listens on the bus for the worker's topics, so it wakes as soon as a job is
    assigned, exactly as the HTTP long-poll of the server does.
    """

    def __init__(
        self, orchestrator: Orchestrator, workers: WorkerManagement, bus: EventBus
    ) -> None:
        self._orchestrator = orchestrator
        self._workers = workers
        self._bus = bus

    async def register(self, registration: WorkerRegistration) -> Worker:
        worker, _ = await self._workers.register(registration)
        return worker

    async def heartbeat(self, worker_id: str, running: Sequence[tuple[str, int]]) -> Instructions:
        return await self._workers.heartbeat(worker_id, running)

    async def poll(
        self, worker_id: str, running: Sequence[tuple[str, int]], timeout_s: float
    ) -> Instructions:
        deadline = trio.current_time() + timeout_s
        store_check = self._workers.instructions
        async with self._bus.subscribe(f"workers.{worker_id}.>") as events:
            while True:
                # subscribed first, then read: an assignment cannot slip between the two
                worker = await self._workers.get(worker_id)
                instructions = await store_check(worker, running)
                if instructions.jobs or instructions.cancel or instructions.drain:
                    return instructions
                # the bus may drop events: look at the store again now and then regardless
                with trio.move_on_at(min(deadline, trio.current_time() + 1.0)):
                    await events.receive()
                if trio.current_time() >= deadline:
                    return Instructions()

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
