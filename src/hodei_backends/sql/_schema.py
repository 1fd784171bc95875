"""The tables of the SQL store, as one SQLAlchemy ``MetaData``.

The Alembic migrations under ``migrations/versions`` create exactly this schema; a test compares
a freshly migrated database with it. Change both together: a new revision for every change here.

Every table has an integer ``seq`` primary key that grows with each insert: it is the "order
added" of every listing. Values the store queries, sorts or indexes on have their own columns;
the rest of a domain value (a job's spec, a pipeline's steps, a run's pipeline and steps) is one
JSON text column, written and read by ``_rows``.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "ACTIVE_STATES",
    "LIVE_STATES",
    "QUEUED",
    "jobs",
    "log_chunks",
    "metadata",
    "pipelines",
    "runs",
    "workers",
]

#: The job states that hold a slot on a worker (``JobState.is_active``), as stored.
ACTIVE_STATES = ("assigned", "running", "cancelling")
#: ``JobState.QUEUED``, as stored.
QUEUED = "queued"
#: The states of a job not finished: queued or active.
LIVE_STATES = (QUEUED, *ACTIVE_STATES)

metadata = sa.MetaData()

# A BIGSERIAL on PostgreSQL; on SQLite only a column declared exactly INTEGER PRIMARY KEY is the
# rowid (and so autoincrementing and free), a BIGINT one would be neither.
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _seq() -> sa.Column[int]:
    return sa.Column("seq", _Seq, primary_key=True, autoincrement=True)


jobs = sa.Table(
    "jobs",
    metadata,
    _seq(),
    sa.Column("id", sa.String, nullable=False),
    sa.Column("tenant", sa.String, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("unstarted_losses", sa.Integer, nullable=False, server_default="0"),  # 0002
    # copies of spec.priority and spec.resources: the queue order and the capacity sums
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("cpu", sa.Double, nullable=False),
    sa.Column("memory_mb", sa.BigInteger, nullable=False),
    sa.Column("worker_id", sa.String),
    sa.Column("exit_code", sa.Integer),
    sa.Column("failure", sa.String(16)),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("assigned_at", sa.Double),
    sa.Column("started_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("run_id", sa.String),
    sa.Column("step", sa.String),
    sa.Column("spec", sa.Text, nullable=False),
)
sa.Index("ix_jobs_id", jobs.c.id, unique=True)


def _partial(name: str, *columns: sa.ColumnElement[object], where: sa.ColumnElement[bool]) -> None:
    sa.Index(name, *columns, sqlite_where=where, postgresql_where=where)


# Most jobs are finished, and a finished job no longer changes: the indexes that state changes
# touch hold the live jobs only. They stay small, and the many changes of a job's life write
# few of their pages. (A query uses one only if its WHERE has the index's condition as is.)
#
# queued_jobs: WHERE state = 'queued' ORDER BY priority DESC, seq, read in index order
_partial("ix_jobs_queue", jobs.c.priority.desc(), jobs.c.seq, where=jobs.c.state == QUEUED)
# a worker's active jobs: assignment, capacity, release
_partial("ix_jobs_active", jobs.c.worker_id, where=jobs.c.state.in_(ACTIVE_STATES))
# admission: a tenant's queued and active counts
_partial("ix_jobs_tenant_live", jobs.c.tenant, jobs.c.state, where=jobs.c.state.in_(LIVE_STATES))
# a tenant's recent submissions (admission); jobs by worker and by run (listings)
sa.Index("ix_jobs_tenant_created", jobs.c.tenant, jobs.c.created_at)
sa.Index("ix_jobs_worker", jobs.c.worker_id)
_partial("ix_jobs_run", jobs.c.run_id, where=jobs.c.run_id.is_not(None))

workers = sa.Table(
    "workers",
    metadata,
    _seq(),
    sa.Column("id", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("cpu", sa.Double),
    sa.Column("memory_mb", sa.BigInteger),
    sa.Column("last_heartbeat", sa.Double, nullable=False),
    sa.Column("registered_at", sa.Double, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("hostname", sa.String, nullable=False),
)
sa.Index("ix_workers_id", workers.c.id, unique=True)
sa.Index("ix_workers_name", workers.c.name, unique=True)

pipelines = sa.Table(
    "pipelines",
    metadata,
    _seq(),
    sa.Column("id", sa.String, nullable=False),
    sa.Column("tenant", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("steps", sa.Text, nullable=False),
)
sa.Index("ix_pipelines_id", pipelines.c.id, unique=True)
sa.Index("ix_pipelines_tenant", pipelines.c.tenant)

runs = sa.Table(
    "runs",
    metadata,
    _seq(),
    sa.Column("id", sa.String, nullable=False),
    # no foreign key: a deleted pipeline's runs stay, each with its own copy of the pipeline
    sa.Column("pipeline_id", sa.String, nullable=False),
    sa.Column("tenant", sa.String, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double),
    sa.Column("pipeline", sa.Text, nullable=False),
    sa.Column("steps", sa.Text, nullable=False),
)
sa.Index("ix_runs_id", runs.c.id, unique=True)
sa.Index("ix_runs_pipeline_id", runs.c.pipeline_id)

log_chunks = sa.Table(
    "log_chunks",
    metadata,
    # no foreign key to jobs either: chunks of an attempt may arrive before anyone asks, and the
    # store does not check what a chunk belongs to (the orchestrator fences reports)
    sa.Column("job_id", sa.String, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("stream", sa.String(8), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("ts", sa.Double, nullable=False),
)
