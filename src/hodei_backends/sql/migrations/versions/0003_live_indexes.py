"""The indexes that a job's state changes touch hold the live jobs only.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Each state change of a job (queued, assigned, running, finished) rewrote its entry in three
indexes over every job ever run. Now the queue, a worker's active jobs and a tenant's live jobs
have partial indexes of the jobs concerned, and listing by worker or by run has an index
written once per job (by run: only jobs of a run).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_QUEUED = sa.text("state = 'queued'")
_ACTIVE = sa.text("state IN ('assigned', 'running', 'cancelling')")
_LIVE = sa.text("state IN ('queued', 'assigned', 'running', 'cancelling')")
_IN_A_RUN = sa.text("run_id IS NOT NULL")


def _partial(name: str, columns: list[str | sa.TextClause], where: sa.TextClause) -> None:
    op.create_index(name, "jobs", columns, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    """Replace the queue, worker, tenant and run indexes of ``jobs`` with partial ones."""
    for name in ("ix_jobs_queue", "ix_jobs_worker_state", "ix_jobs_tenant_state", "ix_jobs_run"):
        op.drop_index(name, "jobs")
    _partial("ix_jobs_queue", [sa.text("priority DESC"), "seq"], _QUEUED)
    _partial("ix_jobs_active", ["worker_id"], _ACTIVE)
    _partial("ix_jobs_tenant_live", ["tenant", "state"], _LIVE)
    op.create_index("ix_jobs_worker", "jobs", ["worker_id"])
    _partial("ix_jobs_run", ["run_id"], _IN_A_RUN)


def downgrade() -> None:
    """Back to the full indexes of revision 0001."""
    for name in (
        "ix_jobs_queue",
        "ix_jobs_active",
        "ix_jobs_tenant_live",
        "ix_jobs_worker",
        "ix_jobs_run",
    ):
        op.drop_index(name, "jobs")
    op.create_index("ix_jobs_queue", "jobs", ["state", sa.text("priority DESC"), "seq"])
    op.create_index("ix_jobs_worker_state", "jobs", ["worker_id", "state"])
    op.create_index("ix_jobs_tenant_state", "jobs", ["tenant", "state"])
    op.create_index("ix_jobs_run", "jobs", ["run_id"])
