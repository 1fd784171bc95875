"""Jobs count the attempts lost before they started, which cost no retry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``jobs.unstarted_losses`` (0 for every job so far)."""
    op.add_column(
        "jobs",
        sa.Column("unstarted_losses", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    """Drop ``jobs.unstarted_losses``."""
    # A plain ALTER TABLE … DROP COLUMN (SQLite has it since 3.35): a batch operation would
    # copy the table on SQLite and lose the DESC of ix_jobs_queue on the way.
    op.drop_column("jobs", "unstarted_losses")
