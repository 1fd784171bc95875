"""The first schema: jobs, workers, pipelines, runs and log chunks.

Written by hand to match ``hodei_backends.sql._schema`` as it was then; a test checks that a
database migrated to the latest revision has exactly the schema of ``_schema``.

Revision ID: 0001
Revises:
Create Date: 2026-09-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _seq() -> sa.Column[int]:
    return sa.Column("seq", _Seq, primary_key=True, autoincrement=True)


def upgrade() -> None:
    """Create every table and index."""
    op.create_table(
        "jobs",
        _seq(),
        sa.Column("id", sa.String, nullable=False),
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
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
    op.create_index("ix_jobs_id", "jobs", ["id"], unique=True)
    op.create_index("ix_jobs_queue", "jobs", ["state", sa.text("priority DESC"), "seq"])
    op.create_index("ix_jobs_worker_state", "jobs", ["worker_id", "state"])
    op.create_index("ix_jobs_tenant_state", "jobs", ["tenant", "state"])
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant", "created_at"])
    op.create_index("ix_jobs_run", "jobs", ["run_id"])

    op.create_table(
        "workers",
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
    op.create_index("ix_workers_id", "workers", ["id"], unique=True)
    op.create_index("ix_workers_name", "workers", ["name"], unique=True)

    op.create_table(
        "pipelines",
        _seq(),
        sa.Column("id", sa.String, nullable=False),
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("steps", sa.Text, nullable=False),
    )
    op.create_index("ix_pipelines_id", "pipelines", ["id"], unique=True)
    op.create_index("ix_pipelines_tenant", "pipelines", ["tenant"])

    op.create_table(
        "runs",
        _seq(),
        sa.Column("id", sa.String, nullable=False),
        sa.Column("pipeline_id", sa.String, nullable=False),
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double),
        sa.Column("pipeline", sa.Text, nullable=False),
        sa.Column("steps", sa.Text, nullable=False),
    )
    op.create_index("ix_runs_id", "runs", ["id"], unique=True)
    op.create_index("ix_runs_pipeline_id", "runs", ["pipeline_id"])

    op.create_table(
        "log_chunks",
        sa.Column("job_id", sa.String, primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
    )


def downgrade() -> None:
    """Drop every table (and with them their indexes)."""
    for table in ["log_chunks", "runs", "pipelines", "workers", "jobs"]:
        op.drop_table(table)
