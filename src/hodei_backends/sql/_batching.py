"""Group commit: operations that arrive together share one thread call and, for writes, one
transaction.

On a small machine most of the cost of a store call is the trip to a worker thread and the
commit (and, on PostgreSQL, the round trips of BEGIN and COMMIT), not the SQL. So the calls
that wait while a batch runs are taken together by the next one: one
``trio.to_thread.run_sync`` for all of them, and for writes one transaction. An operation that
raises before writing anything gets its exception alone; if one fails after writing, or the
batch's transaction itself fails, the batch is rolled back and each operation runs again in a
transaction of its own (change functions may be called more than once), so every caller gets
its own outcome.

A caller cancelled before its batch starts leaves it; once the batch runs, the caller waits for
it, like ``trio.to_thread.run_sync``.

A batcher may run several batches side by side (``parallel``): the store does so on
PostgreSQL, whose threads mostly wait for the server, for operations that cannot deadlock each
other (see ``Database``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import outcome
import trio

from hodei_core.errors import StorageError

from ._locks import Locks

__all__ = ["Batcher", "Operation"]

T = TypeVar("T")

#: The most operations one batch takes (one transaction holds the write lock that long).
MAX_BATCH = 256


class Operation(Generic[T]):
    """One call waiting for a batch: ``fn(connection)``, whether it writes, and its outcome.

    Operations with the same ``group`` may be run together in a batch, by one call of
    ``group(connection, operations)``, which sets each one's ``result`` from its ``args``
    (see ``Database.grouped``); ``fn`` is how it runs alone.
    """

    __slots__ = (
        "args",
        "fn",
        "group",
        "locks",
        "result",
        "retry_unique",
        "taken",
        "task",
        "what",
        "write",
    )

    def __init__(
        self,
        what: str,
        fn: Callable[[Any], T],
        *,
        write: bool,
        retry_unique: bool = False,
        group: Callable[[Any, list[Operation[Any]]], None] | None = None,
        args: Any = None,
        locks: Locks | None = None,
    ) -> None:
        self.what = what
        self.fn = fn
        self.write = write
        #: whether, run alone, a unique violation makes it run again (see ``Database.write``)
        self.retry_unique = retry_unique
        self.group = group
        self.args = args
        #: what it will lock, for a batch of several to lock first (see ``_locks``)
        self.locks = locks
        self.result: outcome.Outcome[T] | None = None
        self.taken = False
        self.task: trio.lowlevel.Task | None = None


class Batcher:
    """Hands the operations submitted meanwhile to ``run_batch`` together, each batch in one
    worker thread: one batch at a time, or up to ``parallel`` at once.

    ``run_batch`` runs in the thread and must set every operation's ``result``; with
    ``parallel`` above 1 it must be safe to call from several threads at once. ``serve`` must
    run (in the store's nursery) for submitted operations to make progress.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Operation[Any]]], None],
        name: str,
        limiter: trio.CapacityLimiter | None = None,
        *,
        parallel: int = 1,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, not {parallel}")
        self._run_batch = run_batch
        self._name = name
        self._limiter = limiter
        #: how many batches may run at once
        self.parallel = parallel
        self._pending: list[Operation[Any]] = []
        self._running: list[list[Operation[Any]]] = []
        self._wake = trio.Event()
        self._closed = False

    async def submit(self, op: Operation[T]) -> T:
        """Run ``op`` in a coming batch and return its result (or raise its exception)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise StorageError(f"{op.what}: the store is closed")
        op.task = trio.lowlevel.current_task()
        self._pending.append(op)
        self._wake.set()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            if op.taken:
                return trio.lowlevel.Abort.FAILED  # running: wait for it, like to_thread
            self._pending.remove(op)
            return trio.lowlevel.Abort.SUCCEEDED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run batches until cancelled; then fail what is still waiting."""
        slots = trio.Semaphore(self.parallel)
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    await self._wake.wait()
                    self._wake = trio.Event()
                    while self._pending:
                        await slots.acquire()
                        if not self._pending:  # its callers were cancelled meanwhile
                            slots.release()
                            break
                        if self.parallel == 1:
                            await self._run(self._take(), slots)
                        else:
                            nursery.start_soon(self._run, self._take(), slots)
        finally:
            self._closed = True
            self._finish([op for batch in self._running for op in batch], None)
            self._finish(self._pending, None)
            self._running.clear()
            self._pending.clear()

    def _take(self) -> list[Operation[Any]]:
        """The next batch, from now on the batcher's to run (or to fail, if it closes first)."""
        batch = self._pending[:MAX_BATCH]
        del self._pending[:MAX_BATCH]
        for op in batch:
            op.taken = True
        self._running.append(batch)
        return batch

    async def _run(self, batch: list[Operation[Any]], slots: trio.Semaphore) -> None:
        """Run ``batch`` (one of ``_running``) in a thread, then give back its slot."""
        try:
            failure = await trio.to_thread.run_sync(
                outcome.capture, self._run_batch, batch, limiter=self._limiter
            )
        finally:
            slots.release()
        self._running.remove(batch)
        cause = failure.error if isinstance(failure, outcome.Error) else None
        self._finish(batch, cause)

    def _finish(self, batch: list[Operation[Any]], cause: BaseException | None) -> None:
        """Wake each operation's caller with its outcome; one without (``run_batch`` failed
        before it, or the store closed first) gets a ``StorageError`` from ``cause``."""
        for op in batch:
            result = op.result
            if result is None:
                what = "failed" if cause is not None else "closed before it ran"
                error = StorageError(f"{op.what}: the {self._name} batch {what}")
                error.__cause__ = cause
                result = outcome.Error(error)
            assert op.task is not None
            trio.lowlevel.reschedule(op.task, result)
