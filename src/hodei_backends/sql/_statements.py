"""Every SQL statement of the SQL store, as SQLAlchemy Core, compiled once per database.

``FOR UPDATE`` clauses lock the rows a change reads on PostgreSQL and render as nothing on
SQLite, where ``BEGIN IMMEDIATE`` already makes each write transaction exclusive. Locks are
taken in one order, so that two transactions cannot wait for each other: workers, runs,
tenants' admission locks, then jobs; several of one kind in id order (key order for tenants).
A statement that locks several rows sorts them itself; a write batch of several operations
takes every lock its operations will wait for first (``_locks``).

Parameters are named; a list of ids is one parameter (``ids``, made by ``id_list``): a
PostgreSQL array, a JSON array for SQLite's ``json_each``. So every statement has one SQL text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hodei_core.ports import JobQuery

from ._bulk import Unnest, Values
from ._compiled import Sql
from ._rows import CHUNK_COLUMNS, JOB_COLUMNS, PIPELINE_COLUMNS, RUN_COLUMNS, WORKER_COLUMNS
from ._schema import ACTIVE_STATES, LIVE_STATES, QUEUED, jobs, log_chunks, pipelines, runs, workers

__all__ = ["Statements"]

_b = sa.bindparam

# Arbitrary constants naming the advisory locks of PostgreSQL: the one that serialises
# migrations, and the namespace of the per-tenant admission locks (two-key form).
_MIGRATION_LOCK_ID = 0x686F646569  # "hodei"
_TENANT_LOCKS = 0x686F6465  # "hode"
_MAX_VARIANTS = 256  # memoised statements per kind, before starting over
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33)  # UPDATE … FROM, in SQLite


def _one_of(column: sa.ColumnElement[str], values: Sequence[str]) -> sa.ColumnElement[bool]:
    # The values are written in the SQL, not bound: a query uses a partial index only if its
    # WHERE visibly implies the index's (see _schema). They are the store's own constants.
    return column.in_([_literal(value) for value in values])


def _literal(value: str) -> sa.ColumnElement[str]:
    assert value.isidentifier(), value  # a state's name, nothing to quote
    return sa.literal_column(f"'{value}'", sa.String)


def _insert(table: sa.Table, names: Sequence[str]) -> sa.Insert:
    return sa.insert(table).values({name: _b(name) for name in names})


class Statements:
    """The statements of one database, compiled for its dialect.

    Statements whose shape depends on arguments (a job update touching some columns, a listing
    with some filters) are made by methods and memoised.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.postgresql = dialect.name == "postgresql"
        self._updates: dict[frozenset[str], Sql] = {}
        self._listings: dict[tuple[object, ...], Sql] = {}
        self._jobs()
        self._assignment()
        self._workers()
        self._pipelines_and_runs()
        self._logs()
        self.tenant_lock = self._pg_only(f"SELECT pg_advisory_xact_lock({_TENANT_LOCKS}, :key)")
        self._locks_ahead()
        self.migration_lock = self._pg_only(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")

    def _sql(self, statement: sa.ClauseElement) -> Sql:
        return Sql(statement, self.dialect)

    def _bulk_insert(
        self, table: sa.Table, names: list[str], one: sa.ClauseElement, tail: str = ""
    ) -> Sql:
        """``one``, an insert of one row of ``names`` into ``table``, able to insert many in
        one statement (``_bulk``); ``tail`` is its ``ON CONFLICT`` clause (PostgreSQL)."""
        sql = self._sql(one)
        if self.postgresql:
            arrays = ", ".join(f"%({name})s::{self._array(table.c[name])}" for name in names)
            text = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays})"
            sql.bulk = Unnest(text + tail, names)
        else:
            assert sql.names is not None and not sql.defaults, sql
            head, rest = sql.text.split(" VALUES ", 1)
            row, rest = rest[: rest.index(")") + 1], rest[rest.index(")") + 1 :]
            sql.bulk = Values(lambda n: f"{head} VALUES {', '.join([row] * n)}{rest}", sql.names)
        return sql

    def _pg_only(self, text: str) -> Sql | None:
        return self._sql(sa.text(text)) if self.postgresql else None

    def _array(self, column: sa.Column[Any]) -> str:
        """The PostgreSQL type of an array of ``column``'s values."""
        return f"{column.type.compile(dialect=self.dialect)}[]"

    def _in_ids(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
        if self.postgresql:
            return column == sa.any_(_b("ids", type_=postgresql.ARRAY(sa.String)))
        ids: sa.Select[Any] = sa.select(sa.literal_column("value")).select_from(
            sa.func.json_each(_b("ids"))
        )
        return column.in_(ids.scalar_subquery())

    def id_list(self, ids: Collection[str]) -> object:
        """The value of an ``ids`` parameter."""
        return list(ids) if self.postgresql else json.dumps(list(ids))

    def _jobs(self) -> None:
        select_jobs = sa.select(*JOB_COLUMNS)
        names = [c.name for c in jobs.c if c.name != "seq"]
        self.insert_job = self._bulk_insert(jobs, names, _insert(jobs, names))
        job = select_jobs.where(jobs.c.id == _b("id"))
        self.job = self._sql(job)
        # several jobs to change in one transaction, locked in id order
        self.jobs_for_update = self._sql(
            select_jobs.where(self._in_ids(jobs.c.id)).order_by(jobs.c.id).with_for_update()
        )
        self.queued_jobs = self._sql(
            select_jobs.where(jobs.c.state == _literal(QUEUED))
            .order_by(jobs.c.priority.desc(), jobs.c.seq)
            .limit(_b("limit"))
        )
        active = select_jobs.where(
            jobs.c.worker_id == _b("worker_id"), _one_of(jobs.c.state, ACTIVE_STATES)
        )
        self.active_jobs = self._sql(active.order_by(jobs.c.seq))
        # in id order, as a group of update_job calls locks jobs
        self.active_jobs_for_update = self._sql(active.order_by(jobs.c.id).with_for_update())
        self.active_by_tenant = self._sql(
            sa.select(jobs.c.tenant, sa.func.count())
            .where(_one_of(jobs.c.state, ACTIVE_STATES))
            .group_by(jobs.c.tenant)
        )
        self.tenant_counts = self._sql(
            sa.select(jobs.c.state, sa.func.count())
            .where(jobs.c.tenant == _b("tenant"), _one_of(jobs.c.state, LIVE_STATES))
            .group_by(jobs.c.state)
        )
        self.tenant_recent = self._sql(
            sa.select(jobs.c.created_at)
            .where(jobs.c.tenant == _b("tenant"), jobs.c.created_at >= _b("since"))
            .order_by(jobs.c.created_at)
        )

    def _assignment(self) -> None:
        # A job another transaction holds is being changed, so it is no longer "as the
        # scheduler saw it": skip it rather than wait (the next pass sees it again). Whether it
        # is still queued is checked on the row read: with "state = 'queued'" here, SQLite
        # would rather walk every queued job than look the few ids up.
        self.jobs_to_claim = self._sql(
            sa.select(*JOB_COLUMNS).where(self._in_ids(jobs.c.id)).with_for_update(skip_locked=True)
        )
        # Workers are locked (in id order) before their usage is counted, so two schedulers
        # filling one worker take turns and each sees the other's assignments.
        self.workers_to_fill = self._sql(
            sa.select(*WORKER_COLUMNS)
            .where(self._in_ids(workers.c.id))
            .order_by(workers.c.id)
            .with_for_update()
        )
        self.usage_of = self._sql(
            sa.select(
                jobs.c.worker_id,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(jobs.c.cpu), 0.0),
                sa.func.coalesce(sa.func.sum(jobs.c.memory_mb), 0),
            )
            .where(self._in_ids(jobs.c.worker_id), _one_of(jobs.c.state, ACTIVE_STATES))
            .group_by(jobs.c.worker_id)
        )

    def _workers(self) -> None:
        select_workers = sa.select(*WORKER_COLUMNS)
        self.insert_worker = self._sql(_insert(workers, [c.name for c in WORKER_COLUMNS]))
        worker = select_workers.where(workers.c.id == _b("id"))
        self.worker = self._sql(worker)
        self.worker_for_update = self._sql(worker.with_for_update())
        self.worker_by_name_for_update = self._sql(
            select_workers.where(workers.c.name == _b("name")).with_for_update()
        )
        self.update_worker = self._sql(
            sa.update(workers)
            .where(workers.c.id == _b("_id"))
            .values({c.name: _b(c.name) for c in WORKER_COLUMNS if c.name != "id"})
        )
        self.workers = self._sql(select_workers.order_by(workers.c.seq))
        touched: tuple[sa.ColumnElement[bool], ...] = (
            self._in_ids(workers.c.id),
            _one_of(workers.c.state, ("online", "draining")),
            workers.c.last_heartbeat < _b("now"),
        )
        if self.postgresql:
            # An UPDATE locks rows in the order its scan finds them: the rows to touch are
            # locked by a subquery, in id order, and the UPDATE changes only rows it locked.
            locked = sa.select(workers.c.id).where(*touched).order_by(workers.c.id)
            touched = (workers.c.id.in_(locked.with_for_update().scalar_subquery()),)
        self.touch_workers = self._sql(
            sa.update(workers).where(*touched).values(last_heartbeat=_b("now"))
        )
        usage = (
            sa.select(
                jobs.c.worker_id,
                sa.func.count().label("slots"),
                sa.func.coalesce(sa.func.sum(jobs.c.cpu), 0.0).label("cpu"),
                sa.func.coalesce(sa.func.sum(jobs.c.memory_mb), 0).label("memory_mb"),
            )
            .where(_one_of(jobs.c.state, ACTIVE_STATES))
            .group_by(jobs.c.worker_id)
            .subquery("usage")
        )
        used_slots = sa.func.coalesce(usage.c.slots, 0)
        views = (
            sa.select(
                *WORKER_COLUMNS,
                used_slots,
                sa.func.coalesce(usage.c.cpu, 0.0),
                sa.func.coalesce(usage.c.memory_mb, 0),
            )
            .select_from(workers.outerjoin(usage, usage.c.worker_id == workers.c.id))
            .where(workers.c.state == "online")
            .order_by(workers.c.seq)
        )
        self.worker_views = self._sql(views)
        self.worker_views_with_room = self._sql(views.where(used_slots < workers.c.slots))

    def _locks_ahead(self) -> None:
        """What a write batch locks before its operations run (PostgreSQL only, see _locks)."""
        self.lock_workers: Sql | None = None
        self.lock_runs: Sql | None = None
        self.lock_tenants: Sql | None = None
        self.lock_jobs_of: Sql | None = None
        if not self.postgresql:
            return
        names = workers.c.name == sa.any_(_b("names", type_=postgresql.ARRAY(sa.String)))
        self.lock_workers = self._sql(
            sa.select(workers.c.id, workers.c.name)
            .where(sa.or_(self._in_ids(workers.c.id), names))
            .order_by(workers.c.id)
            .with_for_update()
        )
        self.lock_runs = self._sql(
            sa.select(runs.c.id)
            .where(self._in_ids(runs.c.id))
            .order_by(runs.c.id)
            .with_for_update()
        )
        # unnest gives the keys in the order of the array (sorted by the caller), and each
        # row's lock is taken as the row is made
        self.lock_tenants = self._pg_only(
            f"SELECT pg_advisory_xact_lock({_TENANT_LOCKS}, key) "
            "FROM unnest(CAST(:keys AS INTEGER[])) AS key"
        )
        self.lock_jobs_of = self._sql(
            sa.select(jobs.c.id)
            .where(self._in_ids(jobs.c.worker_id), _one_of(jobs.c.state, ACTIVE_STATES))
            .order_by(jobs.c.id)
            .with_for_update()
        )

    def _pipelines_and_runs(self) -> None:
        self.insert_pipeline = self._sql(
            _insert(pipelines, [c.name for c in pipelines.c if c.name != "seq"])
        )
        select_pipelines = sa.select(*PIPELINE_COLUMNS).order_by(pipelines.c.seq)
        self.pipeline = self._sql(select_pipelines.where(pipelines.c.id == _b("id")))
        self.pipelines = self._sql(select_pipelines)
        self.pipelines_of_tenant = self._sql(
            select_pipelines.where(pipelines.c.tenant == _b("tenant"))
        )
        self.delete_pipeline = self._sql(sa.delete(pipelines).where(pipelines.c.id == _b("id")))
        self.insert_run = self._sql(_insert(runs, [c.name for c in runs.c if c.name != "seq"]))
        select_runs = sa.select(*RUN_COLUMNS).order_by(runs.c.seq)
        run = select_runs.where(runs.c.id == _b("id"))
        self.run = self._sql(run)
        self.run_for_update = self._sql(run.with_for_update())
        self.runs = self._sql(select_runs)
        self.runs_of_pipeline = self._sql(
            select_runs.where(runs.c.pipeline_id == _b("pipeline_id"))
        )
        update_run = sa.update(runs).where(runs.c.id == _b("_id"))
        own = ["state", "cancel_requested", "created_at", "finished_at", "steps"]
        self.update_run = self._sql(update_run.values({name: _b(name) for name in own}))
        everything = [*own, "pipeline_id", "tenant", "pipeline"]
        self.update_run_and_pipeline = self._sql(
            update_run.values({name: _b(name) for name in everything})
        )

    def _logs(self) -> None:
        insert: Callable[[sa.Table], Any] = postgresql.insert if self.postgresql else sqlite.insert
        # a resent chunk (same job, attempt and seq) is ignored, in the same statement
        key = [log_chunks.c.job_id, log_chunks.c.attempt, log_chunks.c.seq]
        names = [c.name for c in log_chunks.c]
        self.insert_chunks = self._bulk_insert(
            log_chunks,
            names,
            insert(log_chunks)
            .values({name: _b(name) for name in names})
            .on_conflict_do_nothing(index_elements=key),
            f" ON CONFLICT ({', '.join(c.name for c in key)}) DO NOTHING",
        )
        chunks = (
            sa.select(*CHUNK_COLUMNS)
            .where(
                log_chunks.c.job_id == _b("job_id"),
                log_chunks.c.attempt == _b("attempt"),
                log_chunks.c.seq >= _b("from_seq"),
            )
            .order_by(log_chunks.c.seq)
        )
        self.chunks = self._sql(chunks)
        self.chunks_limited = self._sql(chunks.limit(_b("limit")))

    def update_job(self, columns: frozenset[str]) -> Sql:
        """``UPDATE jobs SET <columns> WHERE id = :_id``, one parameter per column."""
        sql = self._updates.get(columns)
        if sql is None:
            if len(self._updates) >= _MAX_VARIANTS:
                self._updates.clear()
            names = sorted(columns)
            sql = self._updates[columns] = self._sql(
                sa.update(jobs)
                .where(jobs.c.id == _b("_id"))
                .values({name: _b(name) for name in names})
            )
            # UPDATE … FROM the list of rows (SQLite 3.33 and later); no job twice in one
            sets = ", ".join(f"{name} = v.{name}" for name in names)
            where = f"UPDATE jobs SET {sets} FROM {{}} WHERE jobs.id = v._id"
            if self.postgresql:
                arrays = ", ".join(f"%({name})s::{self._array(jobs.c[name])}" for name in names)
                rows = f"unnest({arrays}, %(_id)s::VARCHAR[]) AS v({', '.join(names)}, _id)"
                sql.bulk = Unnest(where.format(rows), [*names, "_id"])
            elif _UPDATE_FROM:
                head = f"WITH v({', '.join(names)}, _id) AS (VALUES "
                row = f"({', '.join('?' * (len(names) + 1))})"
                tail = f") {where.format('v')}"
                sql.bulk = Values(lambda n: head + ", ".join([row] * n) + tail, [*names, "_id"])
        return sql

    def list_jobs(self, query: JobQuery) -> Sql:
        """The jobs matching ``query`` (its ``states`` must not be empty), in order added;
        parameters ``tenant``, ``worker_id``, ``run_id``, ``offset`` and ``limit``."""
        states = None if query.states is None else tuple(sorted(s.value for s in query.states))
        key = (query.tenant is None, states, query.worker_id is None, query.run_id is None)
        sql = self._listings.get(key)
        if sql is None:
            statement = sa.select(*JOB_COLUMNS)
            if query.tenant is not None:
                statement = statement.where(jobs.c.tenant == _b("tenant"))
            if states is not None:
                statement = statement.where(_one_of(jobs.c.state, states))
            if query.worker_id is not None:
                statement = statement.where(jobs.c.worker_id == _b("worker_id"))
            if query.run_id is not None:
                statement = statement.where(jobs.c.run_id == _b("run_id"))
            statement = statement.order_by(jobs.c.seq).offset(_b("offset")).limit(_b("limit"))
            if len(self._listings) >= _MAX_VARIANTS:
                self._listings.clear()
            sql = self._listings[key] = self._sql(statement)
        return sql
