"""Executors that run Python instead of processes, for tests and embedding."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import trio

from .._models import Job, Stream
from ..ports import LogSink

__all__ = ["CallableExecutor", "ManualExecutor"]


class CallableExecutor:
    """Runs ``fn(job)`` (sync or async) as the job; what it returns is the exit code.

    An exception raised by ``fn`` fails the job (failure ``internal``) with the exception in
    its log. A sync ``fn`` runs in the event loop's thread: keep it quick.
    """

    def __init__(self, fn: Callable[[Job], int | Awaitable[int]]) -> None:
        self._fn = fn

    def __repr__(self) -> str:
        return f"CallableExecutor({self._fn!r})"

    async def run(self, job: Job, logs: LogSink) -> int:
        """Call the function."""
        result = self._fn(job)
        if inspect.isawaitable(result):
            result = await result
        return int(result)


class ManualExecutor:
    """Jobs that run until the test says how they end: for driving the engine step by step.

    ``await executor.started(job_id)`` waits until a job runs; ``executor.finish(job_id, 0)``
    ends it with exit code 0 (``output`` is written to its stdout first). Cancellation ends a
    job as it would a process.
    """

    def __init__(self) -> None:
        self._started: dict[str, trio.Event] = {}
        self._results: dict[str, tuple[int, str]] = {}
        self._done: dict[str, trio.Event] = {}
        self.running: set[str] = set()

    def _event(self, table: dict[str, trio.Event], job_id: str) -> trio.Event:
        event = table.get(job_id)
        if event is None:
            event = table[job_id] = trio.Event()
        return event

    async def started(self, job_id: str) -> None:
        """Wait until the job runs."""
        await self._event(self._started, job_id).wait()

    def finish(self, job_id: str, exit_code: int = 0, output: str = "") -> None:
        """End the job (now if it runs, else as soon as it starts)."""
        self._results[job_id] = (exit_code, output)
        self._event(self._done, job_id).set()

    async def run(self, job: Job, logs: LogSink) -> int:
        """Run until ``finish`` is called for this job."""
        self.running.add(job.id)
        done = self._event(self._done, job.id)
        self._event(self._started, job.id).set()
        try:
            await done.wait()
            code, output = self._results.pop(job.id)
            del self._done[job.id]
            if output:
                await logs.write(Stream.STDOUT, output)
            return code
        finally:
            self.running.discard(job.id)
            self._started.pop(job.id, None)
