"""The SQL store's workers: registration, updates, views, and losing or leaving them."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from hodei_core import Job, Worker, WorkerRegistration, WorkerState, WorkerView
from hodei_core import _lifecycle as lifecycle
from hodei_core.errors import WorkerNotFound

from ._compiled import Tx
from ._database import Database
from ._locks import Locks
from ._rows import WORKER_COLUMNS, job_from_row, view_from_row, worker_from_row, worker_row
from ._statements import Statements
from ._store_jobs import write_jobs

__all__ = ["WorkersMixin"]

_USAGE = len(WORKER_COLUMNS)  # where a view's usage columns start


def _lock_worker(tx: Tx, s: Statements, worker_id: str) -> Worker:
    row = tx.first(s.worker_for_update, {"id": worker_id})
    if row is None:
        raise WorkerNotFound(worker_id)
    return worker_from_row(row)


def _write_worker(tx: Tx, s: Statements, worker: Worker) -> None:
    params: dict[str, Any] = worker_row(worker)
    params["_id"] = params.pop("id")
    tx.run(s.update_worker, params)


def _release(tx: Tx, s: Statements, worker_id: str, change: Callable[[Job], Job]) -> list[Job]:
    """Replace each active job of the worker by ``change(job)``; if one call raises, nothing
    is written (and the caller's transaction rolls back)."""
    rows = tx.rows(s.active_jobs_for_update, {"worker_id": worker_id})
    changes = [(before, change(before)) for before in map(job_from_row, rows)]
    write_jobs(tx, s, changes)
    return [after for _, after in changes]


class WorkersMixin:
    """``Store`` methods about workers, for ``SqlStore``."""

    _db: Database

    async def register_worker(
        self,
        registration: WorkerRegistration,
        new_id: str,
        now: float,
        release: Callable[[Job], Job],
    ) -> tuple[Worker, bool, list[Job]]:
        """See ``hodei_core.ports.Store.register_worker``."""
        s = self._db.statements

        def register(tx: Tx) -> tuple[Worker, bool, list[Job]]:
            row = tx.first(s.worker_by_name_for_update, {"name": registration.name})
            if row is None:
                worker = lifecycle.registered(None, registration, new_id, now)
                tx.run(s.insert_worker, worker_row(worker))
                return worker, True, []
            existing = worker_from_row(row)
            worker = lifecycle.registered(existing, registration, new_id, now)
            released = _release(tx, s, existing.id, release)
            _write_worker(tx, s, worker)
            return worker, False, released

        # Two processes registering one new name at once: the second insert breaks the
        # unique name, and its retry finds (and updates) the first one's worker.
        locks = Locks(names=(registration.name,), release=True)
        return await self._db.write("register_worker", register, retry_unique=True, locks=locks)

    async def get_worker(self, worker_id: str) -> Worker:
        """See ``hodei_core.ports.Store.get_worker``."""
        sql = self._db.statements.worker

        def get(tx: Tx) -> Worker:
            row = tx.first(sql, {"id": worker_id})
            if row is None:
                raise WorkerNotFound(worker_id)
            return worker_from_row(row)

        return await self._db.read("get_worker", get)

    async def list_workers(self) -> list[Worker]:
        """See ``hodei_core.ports.Store.list_workers``."""
        sql = self._db.statements.workers

        def list_(tx: Tx) -> list[Worker]:
            return list(map(worker_from_row, tx.rows(sql)))

        return await self._db.read("list_workers", list_)

    async def update_worker(
        self, worker_id: str, change: Callable[[Worker], Worker]
    ) -> tuple[Worker, Worker]:
        """See ``hodei_core.ports.Store.update_worker``."""
        s = self._db.statements

        def update(tx: Tx) -> tuple[Worker, Worker]:
            before = _lock_worker(tx, s, worker_id)
            after = change(before)
            if after != before:
                _write_worker(tx, s, after)
            return before, after

        return await self._db.write("update_worker", update, locks=Locks(workers=(worker_id,)))

    async def touch_workers(self, worker_ids: Collection[str], now: float) -> None:
        """See ``hodei_core.ports.Store.touch_workers``."""
        s = self._db.statements
        params = {"ids": s.id_list(worker_ids), "now": now}

        def touch(tx: Tx) -> None:
            tx.run(s.touch_workers, params)

        if worker_ids:
            locks = Locks(workers=tuple(worker_ids))
            await self._db.write("touch_workers", touch, locks=locks)

    async def worker_views(self, *, with_room: bool = False) -> list[WorkerView]:
        """See ``hodei_core.ports.Store.worker_views``."""
        s = self._db.statements
        sql = s.worker_views_with_room if with_room else s.worker_views

        def views(tx: Tx) -> list[WorkerView]:
            return [view_from_row(worker_from_row(row), row[_USAGE:]) for row in tx.rows(sql)]

        return await self._db.read("worker_views", views)

    async def lose_worker(
        self, worker_id: str, stale_before: float, change: Callable[[Job], Job]
    ) -> tuple[Worker, list[Job]] | None:
        """See ``hodei_core.ports.Store.lose_worker``."""
        s = self._db.statements

        def lose(tx: Tx) -> tuple[Worker, list[Job]] | None:
            worker = _lock_worker(tx, s, worker_id)
            if worker.state not in (WorkerState.ONLINE, WorkerState.DRAINING):
                return None
            if worker.last_heartbeat >= stale_before:
                return None
            lost = lifecycle.transition_worker(worker, WorkerState.LOST)
            changed = _release(tx, s, worker_id, change)
            _write_worker(tx, s, lost)
            return lost, changed

        locks = Locks(workers=(worker_id,), release=True)
        return await self._db.write("lose_worker", lose, locks=locks)

    async def leave_worker(
        self, worker_id: str, release: Callable[[Job], Job]
    ) -> tuple[Worker, list[Job]]:
        """See ``hodei_core.ports.Store.leave_worker``."""
        s = self._db.statements

        def leave(tx: Tx) -> tuple[Worker, list[Job]]:
            worker = _lock_worker(tx, s, worker_id)
            if worker.state is not WorkerState.OFFLINE:
                worker = lifecycle.transition_worker(worker, WorkerState.OFFLINE)
                _write_worker(tx, s, worker)
            return worker, _release(tx, s, worker_id, release)

        locks = Locks(workers=(worker_id,), release=True)
        return await self._db.write("leave_worker", leave, locks=locks)
