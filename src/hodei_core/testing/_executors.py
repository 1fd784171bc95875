"""Executors that run Python instead of processes, for tests and embedding."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from .._models import Job, Stream
from ..ports import LogSink

__all__ = ["CallableExecutor", "ManualExecutor"]

_K = TypeVar("_K")


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
        if type(result) is int:  # the usual case, without inspect's several isinstance checks
            return result
        if inspect.isawaitable(result):
            result = await result
        return int(result)


class ManualExecutor:
    """Jobs that run until the test says how they end: for driving the engine step by step.

    ``await executor.started(job_id)`` waits until the job's first attempt runs (pass
    ``attempt=`` for a later one); ``executor.finish(job_id, 0)`` ends the job's running
    attempt, or its next one, with exit code 0 (``output`` is written to its stdout first).
    Cancellation ends a job as it would a process.
    """

    def __init__(self) -> None:
        self._started: dict[tuple[str, int], trio.Event] = {}
        self._results: dict[str, tuple[int, str]] = {}
        self._done: dict[str, trio.Event] = {}
        self.running: set[str] = set()

    def _event(self, table: dict[_K, trio.Event], key: _K) -> trio.Event:
        event = table.get(key)
        if event is None:
            event = table[key] = trio.Event()
        return event

    async def started(self, job_id: str, attempt: int = 1) -> None:
        """Wait until that attempt of the job runs (returns at once if it already has)."""
        await self._event(self._started, (job_id, attempt)).wait()

    def finish(self, job_id: str, exit_code: int = 0, output: str = "") -> None:
        """End the job's attempt that runs now, or else its next one."""
        self._results[job_id] = (exit_code, output)
        self._event(self._done, job_id).set()

    async def run(self, job: Job, logs: LogSink) -> int:
        """Run until ``finish`` is called for this job."""
        self.running.add(job.id)
        done = self._event(self._done, job.id)
        self._event(self._started, (job.id, job.attempt)).set()
        try:
            await done.wait()
            code, output = self._results.pop(job.id)
            del self._done[job.id]
            if output:
                await logs.write(Stream.STDOUT, output)
            return code
        finally:
            self.running.discard(job.id)
