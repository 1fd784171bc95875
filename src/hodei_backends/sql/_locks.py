"""The locks of a PostgreSQL write batch, taken in one order before its operations run.

A write batch runs several operations in one transaction, each locking the rows it changes
(``FOR UPDATE``) when it comes to them. Each operation takes its own locks in the store's one
order (``_statements``), but the batch's operations follow one another in the order they came:
a heartbeat of the last worker, then an assignment to the first one, say. Another process's
batch may take the same rows the other way round, and then each waits for the other until
PostgreSQL sees the deadlock (``deadlock_timeout``, a second by default) and fails one of them,
to be run again one operation at a time.

So each operation that may wait for a lock says beforehand what it will lock (``Locks``), and a
batch of several such operations takes all their locks first, kind after kind in the store's
order, each kind in one statement in id order (``lock_ahead``). The operations then lock again
only rows the transaction holds already, which does not wait. An operation alone in its
transaction needs none of this: it locks in the store's order by itself.

SQLite has one write lock for the whole database, taken by ``BEGIN IMMEDIATE``: no order to
keep, and nothing to do.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import attrs

from ._compiled import Tx
from ._statements import Statements

__all__ = ["Locks", "lock_ahead", "tenant_lock_key"]


@attrs.frozen
class Locks:
    """What an operation of a write batch may wait for, to be locked before the batch runs.

    Attributes:
        workers: the ids of the workers whose rows it locks.
        names: the names of workers whose rows it locks, found by name (a registration);
            a name no worker has yet locks nothing (a new worker's row is the transaction's
            own).
        release: whether it locks the active jobs of those workers too (they are released).
        runs: the ids of the runs whose rows it locks.
        tenants: the tenants whose admission lock it takes.
    """

    workers: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    release: bool = False
    runs: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()


def tenant_lock_key(tenant: str) -> int:
    """The key of the tenant's admission lock (PostgreSQL's advisory locks take integers)."""
    # a stable 32-bit signed hash (Python's hash() differs between processes)
    return zlib.crc32(tenant.encode()) - 2**31


def lock_ahead(tx: Tx, s: Statements, declared: Iterable[Locks]) -> None:
    """Take every lock of ``declared`` in the store's order: workers, runs, tenants, then the
    active jobs of the workers released. (A job becomes active on a worker only by an
    assignment, which locks the worker first: the jobs found now are all that the operations
    will release, bar those the batch itself assigns, whose rows it holds already.)

    PostgreSQL only: the statements are None on SQLite.
    """
    assert s.lock_workers and s.lock_runs and s.lock_tenants and s.lock_jobs_of, "PostgreSQL"
    workers: set[str] = set()
    names: set[str] = set()
    released: set[str] = set()
    released_names: set[str] = set()
    runs: set[str] = set()
    tenants: set[int] = set()
    for locks in declared:
        workers.update(locks.workers)
        names.update(locks.names)
        if locks.release:
            released.update(locks.workers)
            released_names.update(locks.names)
        runs.update(locks.runs)
        tenants.update(map(tenant_lock_key, locks.tenants))
    if workers or names:
        params = {"ids": s.id_list(sorted(workers)), "names": sorted(names)}
        rows = tx.rows(s.lock_workers, params)
        released.update(worker_id for worker_id, name in rows if name in released_names)
    if runs:
        tx.rows(s.lock_runs, {"ids": s.id_list(sorted(runs))})
    if tenants:
        tx.rows(s.lock_tenants, {"keys": sorted(tenants)})
    if released:
        tx.rows(s.lock_jobs_of, {"ids": s.id_list(sorted(released))})
