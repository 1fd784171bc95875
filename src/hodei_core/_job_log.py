"""What a worker does with one attempt's output: mask it, number it and send it in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ._masking import SecretMasker
from ._models import Job, LogChunk, Stream

if TYPE_CHECKING:
    from ._worker_loop import WorkerLoop

__all__ = ["STARTED", "JobLog"]


def _set_event() -> trio.Event:
    event = trio.Event()
    event.set()  # (no task can be waiting: this needs no trio run)
    return event


#: The ``started`` of every attempt whose start was taken before its executor ran.
STARTED = _set_event()


class JobLog:
    """The ``LogSink`` of one attempt: masks, numbers and batches its output."""

    def __init__(self, loop: WorkerLoop, job: Job) -> None:
        self._loop = loop
        self._job = job
        secrets = job.spec.secrets.values()
        # most jobs have no secrets: their output needs no masker at all
        self._maskers = {stream: SecretMasker(secrets) for stream in Stream} if secrets else None
        self._seq = 0
        self._pending: list[LogChunk] = []
        self._pending_bytes = 0
        self._dropped = False
        #: Set once the control plane took the attempt's start (at once unless the executor
        #: starts alongside the report); the output is sent only after that.
        self.started = STARTED if not loop.settings.start_alongside else trio.Event()

    async def write(self, stream: Stream, data: str) -> None:
        if self._dropped:
            return
        self._add(stream, data if self._maskers is None else self._maskers[stream].feed(data))
        if self._pending_bytes >= self._loop.settings.log_batch_bytes:
            if not self.started.is_set():
                await self.started.wait()
            await self.flush()

    def _add(self, stream: Stream, data: str) -> None:
        if data:
            if not self._pending:
                self._loop.logs_waiting.set()
            self._pending.append(LogChunk(self._seq, stream, data, self._loop.clock()))
            self._seq += 1
            self._pending_bytes += len(data)

    @property
    def holds_output(self) -> bool:
        """Whether output waits to be sent."""
        return bool(self._pending)

    def take(self) -> list[LogChunk]:
        chunks, self._pending, self._pending_bytes = self._pending, [], 0
        return chunks

    def drop(self) -> None:
        """Forget the output held and all output to come: the attempt's start was refused, so
        the server must hear nothing more of it (a cancelled job's output is not stored)."""
        self._dropped = True
        self.take()

    async def flush(self) -> None:
        """Send the output held, if the start was taken (else it stays held)."""
        if not self.started.is_set():
            return
        chunks = self.take()
        if chunks:
            job = self._job
            await self._loop.control.append_logs(self._loop.worker_id, job.id, job.attempt, chunks)

    def close(self) -> list[LogChunk]:
        """Whatever is still held back, to go with the final report."""
        if self._dropped:
            return []
        for stream, masker in (self._maskers or {}).items():
            self._add(stream, masker.flush())
        return self.take()
