"""The database behind a SQL store: its engine, its statements, and transactions in threads.

SQLAlchemy's engine is synchronous, so each store operation is a function of a transaction
(``Tx``) that runs in a worker thread (``trio.to_thread.run_sync``). SQLAlchemy provides the
pool, the dialects, the schema and the migrations; statements run on the driver's cursor
(``_compiled``).

The operations that arrive while a batch runs go together in the next one: one thread call
and, for writes, one transaction (``_batching``). One thread reads and one writes, which suits
SQLite's single write lock, and spares PostgreSQL a BEGIN and a COMMIT round trip per
operation. An operation that has to run alone (its batch failed) runs in a transaction of its
own, again after a deadlock on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import outcome
import trio
from sqlalchemy.pool import PoolProxiedConnection

from hodei_core.errors import StorageError

from .._registry import redact_url
from ._batching import Batcher, Operation
from ._compiled import Tx
from ._engine import (
    DRIVER_ERRORS,
    WRITE,
    create_engine,
    is_memory,
    retryable,
    translate_errors,
)
from ._locks import Locks, lock_ahead
from ._statements import Statements

__all__ = ["Database", "Group"]

log = logging.getLogger("hodei.sql")

T = TypeVar("T")

_ATTEMPTS = 3  # runs of a PostgreSQL transaction that keeps meeting a deadlock
#: The most write batches of jobs' own operations at once on PostgreSQL (see ``Database``).
JOB_WRITERS = 3
# A connection unused this long goes back to the pool before its next transaction, which on
# PostgreSQL then checks it is alive (a server restart meanwhile): under load the same one
# serves transaction after transaction, unchecked.
_HOLD_S = 1.0


#: Runs many operations' ``args`` in one transaction, setting each one's result (``grouped``).
Group = Callable[[Tx, list[Operation[Any]]], None]


def _one_of_group(group: Group, what: str, args: object, tx: Tx) -> Any:
    """An operation of ``group`` run alone: a group of one."""
    op: Operation[Any] = Operation(what, _never, write=False, args=args)
    group(tx, [op])
    if op.result is None:
        raise StorageError(f"{what}: its group left it without an outcome")
    return op.result.unwrap()


def _never(tx: Tx) -> Any:  # pragma: no cover - the function of an operation made to be grouped
    raise AssertionError("not called")


class _Held:
    """A connection drawn from the pool, its cursor, and since when it is unused."""

    __slots__ = ("autocommit", "connection", "cursor", "since")

    def __init__(self, connection: PoolProxiedConnection, cursor: Any, autocommit: bool) -> None:
        self.connection = connection
        self.cursor = cursor
        #: whether it was put in autocommit mode (PostgreSQL reads), to undo before the pool
        self.autocommit = autocommit
        self.since = 0.0


def _failed(tx: Tx) -> bool:
    """Whether a statement of the transaction failed (PostgreSQL: it takes no more)."""
    return bool(tx.cursor.connection.info.transaction_status.name == "INERROR")


class _Undo(Exception):
    """An operation of a batch raised after writing: the batch must be rolled back."""


# what makes a batch run again, each operation alone
_REDO: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, _Undo)


class Database:
    """An engine, its compiled statements, and how store operations reach it.

    Args:
        url: the database URL (kept for messages, which show it redacted).
        pool_size: the size of the connection pool (and the most threads working at once).

    Raises:
        StorageError: the engine could not be made.
        UnknownScheme: the URL is not a SQLite or PostgreSQL one, or its driver is missing.
    """

    def __init__(self, url: str, pool_size: int) -> None:
        self.url = url
        self.redacted_url = redact_url(url)
        with translate_errors("open", url):
            engine = create_engine(url, pool_size)
        self.engine = engine
        #: The same pool, with connections that begin with BEGIN IMMEDIATE (for migrations).
        self.write_engine = engine.execution_options(**{WRITE: True})
        self.dialect = engine.dialect.name
        self.statements = Statements(engine.dialect)
        self._sqlite = self.dialect == "sqlite"
        self._postgresql = self.dialect == "postgresql"
        # Group commit: one batcher for the one connection of sqlite://, else one for reads and
        # one for writes (SQLite has one write lock: more writer threads would only queue for
        # it, each sleeping in SQLite's busy handler). The limiter bounds the threads at once.
        limiter = trio.CapacityLimiter(max(2, pool_size))
        self._writers = Batcher(self._run_batch, "write", limiter)
        memory = self._sqlite and is_memory(engine)
        self._readers = self._writers if memory else Batcher(self._run_batch, "read", limiter)
        # PostgreSQL: the writes of jobs' own operations (``local``: they lock rows of jobs
        # only, a group's in one statement in id order) have a batcher of their own, which
        # runs up to JOB_WRITERS batches at once; the write thread waits for the server most
        # of its time. Jobs come last in the store's lock order, which a batch of the other
        # writes keeps too (``_locks``): two batches deadlock only over a row both insert (a
        # resent log chunk, a new worker's name), which PostgreSQL breaks, and the batch runs
        # again an operation at a time. The other writes keep one batch at a time. (The
        # connections: the job writers', the other writer's and the reader's.)
        parallel = min(JOB_WRITERS, pool_size - 2) if self._postgresql else 1
        self._job_writers = (
            Batcher(self._run_batch, "job write", limiter, parallel=parallel)
            if parallel > 1
            else self._writers
        )
        # the connection of each kind of transaction (write or not) between two of them; none
        # for sqlite://, whose one connection is shared by everything
        self._held: dict[bool, _Held] = {}
        self._held_lock = threading.Lock()  # write batches may end in several threads at once
        self._hold = not memory
        self.closed = False

    # -- the async side --

    async def read(self, what: str, fn: Callable[[Tx], T]) -> T:
        """``fn(tx)`` in a transaction that only reads, in a thread.

        ``fn`` must read with one statement: on SQLite a read does not ``BEGIN``, so each
        statement sees the database as it is when that statement runs.
        """
        return await self._run(what, fn, write=False, retry_unique=False)

    async def write(
        self,
        what: str,
        fn: Callable[[Tx], T],
        *,
        retry_unique: bool = False,
        local: bool = False,
        locks: Locks | None = None,
    ) -> T:
        """``fn(tx)`` in a write transaction, in a thread. ``fn`` may run more than once (a
        deadlock, or with ``retry_unique`` a unique violation, makes it run again). ``local``
        and ``locks``: as for ``grouped``."""
        return await self._run(
            what, fn, write=True, retry_unique=retry_unique, local=local, locks=locks
        )

    async def grouped(
        self,
        what: str,
        group: Group,
        args: object,
        *,
        write: bool,
        local: bool = False,
        locks: Locks | None = None,
    ) -> Any:
        """What ``group`` makes of ``args`` (its result for them, or its error), run in a
        transaction as ``read`` or ``write`` would.

        ``group(tx, operations)`` must set the ``result`` of each operation, from its
        ``args``. The operations of a batch that share a ``group`` (the same object) go to one
        call, in the order they came; alone, an operation is a group of one. An operation the
        function gives an error must have written nothing of its own (the others' writes stay);
        the function may be called more than once. ``local``: the group locks only rows of
        jobs, in one statement, in id order, and waits for no other lock (``_batching``).
        ``locks``: what the operation may wait for, to be locked first by a write batch of
        several such operations; run alone, it must lock in the store's order (``_locks``).
        """
        if self.closed:
            raise StorageError(f"{what}: the store for {self.redacted_url} is closed")
        batcher = self._batcher(write, local)
        fn = functools.partial(_one_of_group, group, what, args)
        op = Operation(what, fn, write=write, group=group, args=args, locks=locks)
        return await batcher.submit(op)

    async def _run(
        self,
        what: str,
        fn: Callable[[Tx], T],
        *,
        write: bool,
        retry_unique: bool,
        local: bool = False,
        locks: Locks | None = None,
    ) -> T:
        if self.closed:
            raise StorageError(f"{what}: the store for {self.redacted_url} is closed")
        batcher = self._batcher(write, local)
        op = Operation(what, fn, write=write, retry_unique=retry_unique, locks=locks)
        return await batcher.submit(op)

    def _batcher(self, write: bool, local: bool) -> Batcher:
        if not write:
            return self._readers
        return self._job_writers if local else self._writers

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the batches of operations until cancelled; store calls need it."""
        async with trio.open_nursery() as nursery:
            batchers = (self._readers, self._writers, self._job_writers)
            for batcher in {id(b): b for b in batchers}.values():
                await nursery.start(batcher.serve)
            task_status.started()

    async def aclose(self) -> None:
        """Close every connection; the database refuses work from now on."""
        if not self.closed:
            self.closed = True
            await trio.to_thread.run_sync(self.dispose)

    # -- the thread side --

    def _connect(self, write: bool) -> _Held:
        """The connection for a transaction: the one held for its kind, if it was used lately,
        else one from the pool (which, on PostgreSQL, checks it is still alive)."""
        with self._held_lock:
            held = self._held.pop(write, None)
        if held is not None:
            if time.monotonic() - held.since < _HOLD_S:
                return held
            self._let_go(held)
        connection = self.engine.raw_connection()
        driver: Any = connection.dbapi_connection
        # A read is one statement: on PostgreSQL it runs in autocommit mode, which spares the
        # round trips of BEGIN and COMMIT (SQLite reads never BEGIN, see read()).
        autocommit = self._postgresql and not write
        if autocommit:
            driver.autocommit = True
        return _Held(connection, connection.cursor(), autocommit)

    def _let_go(self, held: _Held) -> None:
        """Give a connection back to the pool, as the pool gave it."""
        with contextlib.suppress(*DRIVER_ERRORS):
            held.cursor.close()
            if held.autocommit:
                held.connection.dbapi_connection.autocommit = False  # type: ignore[union-attr]
        held.connection.close()

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        # One thread at a time runs the transactions of one kind (each batcher runs one batch at
        # a time), so the connection of a kind is held between them, rather than drawn from the
        # pool and given back (a reset, and on PostgreSQL a ping: two round trips) each time.
        held = self._connect(write)
        connection, cursor = held.connection, held.cursor
        try:
            if write and not self._postgresql:
                cursor.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(cursor)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        except DRIVER_ERRORS as error:
            # Statements bypass SQLAlchemy, so tell its pool about a connection that broke.
            if self.engine.dialect.is_disconnect(
                cast(Any, error), connection.dbapi_connection, None
            ):
                with contextlib.suppress(*DRIVER_ERRORS):
                    cursor.close()
                connection.invalidate(error)
                connection.close()
            else:
                self._let_go(held)
            raise
        except BaseException:
            self._keep(write, held)  # rolled back: as good as new
            raise
        self._keep(write, held)

    def _keep(self, write: bool, held: _Held) -> None:
        if self._hold and not self.closed:
            held.since = time.monotonic()
            with self._held_lock:
                # one held per kind: the one it replaces goes back to the pool
                replaced = self._held.get(write)
                self._held[write] = held
            if replaced is not None:
                self._let_go(replaced)
            return
        self._let_go(held)

    def transact(self, what: str, fn: Callable[[Tx], T], write: bool, retry_unique: bool) -> T:
        """``fn(tx)`` in a transaction of its own, in this thread."""
        with translate_errors(what, self.url):
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    with self._transaction(write) as tx:
                        return fn(tx)
                except DRIVER_ERRORS as error:
                    if attempt == _ATTEMPTS or not retryable(error, unique=retry_unique):
                        raise
                    log.debug("%s on %s: running it again after %s", what, self.redacted_url, error)
            raise AssertionError("unreachable")  # pragma: no cover

    def _run_batch(self, batch: list[Operation[Any]]) -> None:
        """Run a batch of operations in this thread, setting each one's outcome."""
        if len(batch) == 1:
            op = batch[0]
            op.result = outcome.capture(self._run_alone, op)
            return
        try:
            write = any(op.write for op in batch)
            with self._transaction(write) as tx:
                if self._postgresql and write:
                    # each would lock as it comes, in the order they came (see _locks); one
                    # alone locks in order, and the others wait for no lock (bar rare ones)
                    declared = [op.locks for op in batch if op.locks is not None]
                    if len(declared) > 1:
                        lock_ahead(tx, self.statements, declared)
                # The operations of a batch were all waiting at once: none of their callers has
                # seen another's outcome, so any order is one they could have happened in.
                # Each group runs, all of it, where its first operation came.
                groups: dict[Group, list[Operation[Any]]] = {}
                for op in batch:
                    if op.group is not None:
                        groups.setdefault(op.group, []).append(op)
                for op in batch:
                    if op.group is None:
                        op.result = self._run_in_batch(op, tx)
                    elif (ops := groups.pop(op.group, None)) is not None:
                        self._run_group(op.group, ops, tx)
                if self._sqlite and write and not tx.cursor.connection.in_transaction:
                    # something ended the transaction early: what ran before is not in it
                    raise _Undo("the batch's transaction ended before its commit")
                if self._postgresql and _failed(tx):
                    # a statement failed and something took its error for its own: COMMIT
                    # would roll back, silently, what the others wrote
                    raise _Undo("the batch's transaction failed before its commit")
        except _REDO as error:
            # The batch's transaction failed, or an operation must be undone alone: the whole
            # batch is rolled back, and each operation runs again in a transaction of its own,
            # to get an outcome of its own.
            log.debug("a batch of %d on %s is run again: %r", len(batch), self.redacted_url, error)
            for op in batch:
                op.result = outcome.capture(self._run_alone, op)

    def _run_alone(self, op: Operation[T]) -> T:
        return self.transact(op.what, op.fn, op.write, op.retry_unique)

    @staticmethod
    def _run_in_batch(op: Operation[Any], tx: Tx) -> outcome.Outcome[Any]:
        # No savepoint per operation: two more statements per write cost more than the rare
        # case they serve. An operation that raises before it wrote (a change function refusing
        # a stale report, say) has nothing to undo; one that fails after writing, or with a
        # driver error, undoes the whole batch (see _run_batch).
        tx.wrote = False
        try:
            return outcome.Value(op.fn(tx))
        except DRIVER_ERRORS:
            raise
        except Exception as error:
            if tx.wrote:
                raise _Undo(op.what) from error
            return outcome.Error(error)

    @staticmethod
    def _run_group(group: Group, ops: list[Operation[Any]], tx: Tx) -> None:
        try:
            group(tx, ops)
        except DRIVER_ERRORS:
            raise
        except Exception as error:
            # a group sets each operation's own error itself: this one is the group's, so each
            # operation runs again alone, to get an outcome of its own
            raise _Undo(ops[0].what) from error
        if any(op.result is None for op in ops):
            raise _Undo(f"{ops[0].what}: an operation of the group was left without an outcome")

    def dispose(self) -> None:
        """Close every connection of the pool, in this thread."""
        with self._held_lock:
            held, self._held = list(self._held.values()), {}
        for connection in held:
            self._let_go(connection)
        with translate_errors("close", self.url):
            self.engine.dispose()
