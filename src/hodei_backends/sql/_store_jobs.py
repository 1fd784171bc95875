"""The SQL store's jobs: adding, reading, listing, updating, queueing and assigning them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import outcome

from hodei_core import Job, JobState, LogChunk, TenantUsage, WorkerState
from hodei_core import _lifecycle as lifecycle
from hodei_core.errors import JobNotFound
from hodei_core.ports import RATE_WINDOW_S, Assignment, JobQuery

from ._batching import Operation
from ._compiled import Tx
from ._database import Database
from ._locks import Locks, tenant_lock_key
from ._rows import (
    chunk_row,
    job_changes,
    job_from_row,
    job_row,
    view_from_row,
    worker_from_row,
)
from ._schema import ACTIVE_STATES, QUEUED
from ._statements import Statements

__all__ = ["JobsMixin", "insert_jobs", "write_jobs"]


def _change_jobs(tx: Tx, ops: list[Operation[Any]]) -> None:
    """The ``update_job`` calls of a batch (``Database.grouped``): their jobs read in one
    statement, changed in order, the changes written together, their chunks in one insert."""
    s: Statements = ops[0].args[0]
    ids = list({op.args[1]: None for op in ops})
    current = {
        job.id: job
        for job in map(job_from_row, tx.rows(s.jobs_for_update, {"ids": s.id_list(ids)}))
    }
    first: dict[str, Job] = {}  # each changed job as it was read
    chunk_rows: list[Mapping[str, Any]] = []
    for op in ops:
        _, job_id, change, chunks, keep_nul = op.args
        before = current.get(job_id)
        if before is None:
            op.result = outcome.Error(JobNotFound(job_id))
            continue
        try:
            after = change(before)
        except Exception as error:  # the caller's to get: a change refusing the job, say
            op.result = outcome.Error(error)
            continue
        first.setdefault(job_id, before)
        current[job_id] = after
        op.result = outcome.Value((before, after))
        chunk_rows += [chunk_row(job_id, before.attempt, c, keep_nul=keep_nul) for c in chunks]
    # a job changed twice is written once, from the first version to the last
    write_jobs(tx, s, [(before, current[job_id]) for job_id, before in first.items()])
    if chunk_rows:
        tx.run_many(s.insert_chunks, chunk_rows)


def _add_jobs(tx: Tx, ops: list[Operation[Any]]) -> None:
    """The ``add_job`` calls of a batch (``Database.grouped``), inserted in one statement; one
    with an admission check sees the jobs added before it."""
    s: Statements = ops[0].args[0]
    rows: list[dict[str, Any]] = []
    for op in ops:
        _, job, admit = op.args
        if admit is not None:
            # the usage counts the jobs before it in the group: they go in first
            tx.run_many(s.insert_job, rows)
            rows = []
            # outside the try: a driver error (a deadlock, a lost connection) is the batch's,
            # not a refusal of this job, and the transaction it broke must not be committed
            usage = _usage(tx, s, job)
            try:
                admit(usage)
            except Exception as error:  # refused: over quota
                op.result = outcome.Error(error)
                continue
        rows.append(job_row(job))
        op.result = outcome.Value(None)
    tx.run_many(s.insert_job, rows)


def write_jobs(tx: Tx, s: Statements, changes: Iterable[tuple[Job, Job]]) -> None:
    """Store each ``(before, after)`` pair's ``after``, writing only the columns that differ;
    changes of the same columns go in one ``executemany``."""
    batches: dict[frozenset[str], list[dict[str, object]]] = {}
    for before, after in changes:
        columns = job_changes(before, after)
        if columns:
            columns["_id"] = before.id
            batches.setdefault(frozenset(columns).difference(("_id",)), []).append(columns)
    for names, rows in batches.items():
        tx.run_many(s.update_job(names), rows)


def insert_jobs(tx: Tx, s: Statements, jobs: Sequence[Job]) -> None:
    """Add new jobs, in one ``executemany``."""
    tx.run_many(s.insert_job, [job_row(job) for job in jobs])


def _usage(tx: Tx, s: Statements, job: Job) -> TenantUsage:
    if s.tenant_lock is not None:
        tx.run(s.tenant_lock, {"key": tenant_lock_key(job.tenant)})
    counts: dict[str, int] = dict(tx.rows(s.tenant_counts, {"tenant": job.tenant}))
    since = job.created_at - RATE_WINDOW_S
    recent = tx.rows(s.tenant_recent, {"tenant": job.tenant, "since": since})
    return TenantUsage(
        queued=counts.get(QUEUED, 0),
        running=sum(counts.get(state, 0) for state in ACTIVE_STATES),
        recent_submissions=tuple(row[0] for row in recent),
    )


def _assign(tx: Tx, s: Statements, assignments: Sequence[Assignment], now: float) -> list[Job]:
    worker_ids = sorted({a.worker_id for a in assignments})
    rows = tx.rows(s.workers_to_fill, {"ids": s.id_list(worker_ids)})
    online = {
        worker.id: worker
        for worker in map(worker_from_row, rows)
        if worker.state is WorkerState.ONLINE
    }
    if not online:
        return []
    usage = {row[0]: row[1:] for row in tx.rows(s.usage_of, {"ids": s.id_list(online)})}
    views = {
        worker_id: view_from_row(worker, usage.get(worker_id, ()))
        for worker_id, worker in online.items()
    }
    job_ids = list({a.job_id for a in assignments})
    rows = tx.rows(s.jobs_to_claim, {"ids": s.id_list(job_ids)})
    queued = {job.id: job for job in map(job_from_row, rows) if job.state is JobState.QUEUED}
    changes: list[tuple[Job, Job]] = []
    for a in assignments:
        job = queued.get(a.job_id)
        view = views.get(a.worker_id)
        if job is None or job.attempt != a.attempt or view is None or not view.fits(job.spec):
            continue
        changes.append((job, lifecycle.assign(job, a.attempt, a.worker_id, now)))
        del queued[a.job_id]  # placed: a later assignment of it in the batch no longer holds
        views[a.worker_id] = view.with_job(job.spec)
    write_jobs(tx, s, changes)
    return [after for _, after in changes]


class JobsMixin:
    """``Store`` methods about jobs, for ``SqlStore``."""

    _db: Database

    async def add_job(self, job: Job, admit: Callable[[TenantUsage], None] | None = None) -> None:
        """See ``hodei_core.ports.Store.add_job``."""
        args = (self._db.statements, job, admit)
        # not local: an admission check takes the tenant's lock, and sees the adds of its
        # batch before it, checked or not
        locks = None if admit is None else Locks(tenants=(job.tenant,))
        await self._db.grouped("add_job", _add_jobs, args, write=True, locks=locks)

    async def get_job(self, job_id: str) -> Job:
        """See ``hodei_core.ports.Store.get_job``."""
        s = self._db.statements

        def get(tx: Tx) -> Job:
            row = tx.first(s.job, {"id": job_id})
            if row is None:
                raise JobNotFound(job_id)
            return job_from_row(row)

        return await self._db.read("get_job", get)

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        """See ``hodei_core.ports.Store.list_jobs``."""
        if query.states is not None and not query.states:
            return []
        sql = self._db.statements.list_jobs(query)
        params = {
            "tenant": query.tenant,
            "worker_id": query.worker_id,
            "run_id": query.run_id,
            "offset": query.offset,
            "limit": query.limit,
        }

        def list_(tx: Tx) -> list[Job]:
            return list(map(job_from_row, tx.rows(sql, params)))

        return await self._db.read("list_jobs", list_)

    async def update_job(
        self, job_id: str, change: Callable[[Job], Job], chunks: Sequence[LogChunk] = ()
    ) -> tuple[Job, Job]:
        """See ``hodei_core.ports.Store.update_job``."""
        keep_nul = self._db.dialect != "postgresql"
        args = (self._db.statements, job_id, change, chunks, keep_nul)
        changed: tuple[Job, Job] = await self._db.grouped(
            "update_job", _change_jobs, args, write=True, local=True
        )
        return changed

    async def queued_jobs(self, limit: int) -> list[Job]:
        """See ``hodei_core.ports.Store.queued_jobs``."""
        if limit <= 0:
            return []  # SQLite reads a negative LIMIT as none at all
        sql = self._db.statements.queued_jobs

        def queued(tx: Tx) -> list[Job]:
            return list(map(job_from_row, tx.rows(sql, {"limit": limit})))

        return await self._db.read("queued_jobs", queued)

    async def assign_jobs(self, assignments: Sequence[Assignment], now: float) -> list[Job]:
        """See ``hodei_core.ports.Store.assign_jobs``."""
        if not assignments:
            return []
        s = self._db.statements
        locks = Locks(workers=tuple({a.worker_id: None for a in assignments}))
        return await self._db.write(
            "assign_jobs", lambda tx: _assign(tx, s, assignments, now), locks=locks
        )

    async def active_jobs(self, worker_id: str) -> list[Job]:
        """See ``hodei_core.ports.Store.active_jobs``."""
        sql = self._db.statements.active_jobs

        def active(tx: Tx) -> list[Job]:
            return list(map(job_from_row, tx.rows(sql, {"worker_id": worker_id})))

        return await self._db.read("active_jobs", active)

    async def active_by_tenant(self) -> dict[str, int]:
        """See ``hodei_core.ports.Store.active_by_tenant``."""
        sql = self._db.statements.active_by_tenant

        def count(tx: Tx) -> dict[str, int]:
            return dict(tx.rows(sql))

        return await self._db.read("active_by_tenant", count)
