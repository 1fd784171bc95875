"""The in-process ControlPlane: a worker loop talking to the services directly, no network."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from types import TracebackType

import trio

from ._models import LogChunk, Outcome, Worker, WorkerRegistration, WorkerState
from ._orchestrator import Orchestrator
from ._workers import WorkerManagement
from .events import Event, JobAssigned
from .ports import EventBus, Instructions

__all__ = ["InProcessControlPlane"]

_DRAINING = WorkerState.DRAINING

# The bus may drop events: a waiting poll looks at the store this often regardless.
_RECHECK_S = 1.0


class _News:
    """What a poll's inbox brought since the worker's instructions were last read."""

    __slots__ = ("assigned", "other")

    def __init__(self) -> None:
        #: the ``(job_id, attempt)`` of each ``JobAssigned``
        self.assigned: list[tuple[str, int]] = []
        #: whether anything else came
        self.other = False

    def add(self, event: Event) -> None:
        if type(event) is JobAssigned:
            self.assigned.append((event.job_id, event.attempt))
        else:
            self.other = True

    def __bool__(self) -> bool:
        return self.other or bool(self.assigned)


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
        # each polling worker's record as last read, and whether its last poll left nothing
        # unread (see ``poll``)
        self._known: dict[str, Worker] = {}
        self._fresh: dict[str, bool] = {}

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
        self._known.pop(worker.id, None)
        self._fresh.pop(worker.id, None)
        return worker

    async def heartbeat(self, worker_id: str, running: Sequence[tuple[str, int]]) -> Instructions:
        return await self._workers.heartbeat(worker_id, running)

    async def poll(
        self, worker_id: str, running: Sequence[tuple[str, int]], timeout_s: float
    ) -> Instructions:
        inbox = await self._inbox(worker_id)  # subscribed before the store is read
        deadline = None  # set when the poll first has to wait
        # Whether the store was read since the inbox was last emptied: if nothing arrived since,
        # the store has nothing new for this worker (every change that concerns it is published
        # to it after it is stored), and the poll can go straight to waiting. A worker that
        # polls again right after taking its jobs then costs no store read.
        fresh = self._fresh.pop(worker_id, False)
        news = _News()
        waited = False
        while True:
            # What arrived while the worker was busy only says "look again", as the store read
            # below does. Only an assignment leaves the worker's own record as it was: the
            # record is read again after any other event (a drain, say).
            try:
                while True:
                    news.add(inbox.receive_nowait())
            except trio.WouldBlock:
                pass
            if news.other:
                self._known.pop(worker_id, None)
            if news or not fresh:
                worker = self._known.get(worker_id)
                handed = self._workers.take_handed(news.assigned) if news.assigned else None
                if fresh and not news.other and worker is not None and handed is not None:
                    # Only assignments, and the jobs at hand as the scheduler left them: what a
                    # store read would say, since nothing else concerning the worker changed.
                    held = set(running)
                    new = [job for job in handed if (job.id, job.attempt) not in held]
                    instructions = Instructions(jobs=tuple(new), drain=worker.state is _DRAINING)
                else:
                    if worker is None:
                        worker = self._known[worker_id] = await self._workers.get(worker_id)
                    instructions = await self._workers.instructions(worker, running)
                news = _News()
                fresh = True
                if instructions.jobs or instructions.cancel or instructions.drain:
                    self._fresh[worker_id] = True
                    if not waited:  # a worker polling in a loop must let others run
                        await trio.lowlevel.checkpoint()
                    return instructions
            now = trio.current_time()
            if deadline is None:
                deadline = now + timeout_s
            if now >= deadline:
                self._fresh[worker_id] = fresh
                if not waited:
                    await trio.lowlevel.checkpoint()
                return Instructions()
            waited = True
            with trio.move_on_at(min(deadline, now + _RECHECK_S)) as wait:
                news.add(await inbox.receive())
            if wait.cancelled_caught:
                # events may be lost: now and then, the store is read whatever the inbox says
                fresh = False
                self._known.pop(worker_id, None)

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
        self._known.pop(worker_id, None)
        self._fresh.pop(worker_id, None)
        entry = self._inboxes.pop(worker_id, None)
        if entry is not None:
            await entry[0].aclose()
