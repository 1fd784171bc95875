"""``SqlStore`` and ``open_sql_store``: the ``Store`` port on SQLite or PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ._database import Database
from ._migrate import migrate
from ._store_jobs import JobsMixin
from ._store_runs_logs import PipelinesRunsLogsMixin
from ._store_workers import WorkersMixin

if TYPE_CHECKING:
    from hodei_core.ports import Store

__all__ = ["DEFAULT_POOL_SIZE", "SqlStore", "open_sql_store"]

log = logging.getLogger("hodei.sql")

#: Connections (and threads) per store unless told otherwise.
DEFAULT_POOL_SIZE = 8


class SqlStore(PipelinesRunsLogsMixin, WorkersMixin, JobsMixin):
    """A ``Store`` in a SQLite or PostgreSQL database; open one with ``open_sql_store``.

    Each method is atomic, run in a worker thread: one transaction on PostgreSQL; on SQLite part
    of the transaction that the calls arriving together share (``_batching``). Several processes
    may share one database. Every method's contract is in ``hodei_core.ports.Store``.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def url(self) -> str:
        """The database URL, with any password replaced by ``***``."""
        return self._db.redacted_url

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.dialect

    def __repr__(self) -> str:
        state = " closed" if self._db.closed else ""
        return f"<SqlStore {self._db.redacted_url}{state}>"


@asynccontextmanager
async def open_sql_store(
    url: str, *, pool_size: int = DEFAULT_POOL_SIZE
) -> AsyncIterator[SqlStore]:
    """Open the store in the database at ``url``, bringing its schema up to date first;
    closing the context closes its connections.

    Args:
        url: ``sqlite:///PATH`` (a file, created if missing), ``sqlite://`` (in memory, gone
            when closed), or ``postgresql://…`` / ``postgresql+psycopg://…`` (psycopg 3).
        pool_size: on PostgreSQL, how many connections, and so threads, may work at once.
            SQLite has one thread that reads and one that writes, each running in one go the
            operations that arrived meanwhile (``sqlite://``: one thread for both).

    Raises:
        StorageError: the database cannot be reached or migrated.
        UnknownScheme: the URL is not one of the above, or its driver is not installed.
    """
    if pool_size < 1:
        raise ValueError(f"pool_size must be at least 1, not {pool_size}")
    db = await trio.to_thread.run_sync(Database, url, pool_size)
    raised: BaseException | None = None
    try:
        await trio.to_thread.run_sync(migrate, db)
        async with trio.open_nursery() as nursery:
            await nursery.start(db.serve)
            store = SqlStore(db)
            log.info("opened %r", store)
            try:
                yield store
            except BaseException as error:
                # Raised by the caller's block: re-raised below, outside the nursery, which
                # would wrap it in an ExceptionGroup (a MemoryStore's caller gets it bare).
                raised = error
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await db.aclose()
        log.debug("closed the store at %s", db.redacted_url)
    if raised is not None:
        raise raised


if TYPE_CHECKING:

    def _keeps_the_store_port(store: SqlStore) -> Store:
        # mypy checks here that SqlStore has every method of the port, with its signature
        return store
