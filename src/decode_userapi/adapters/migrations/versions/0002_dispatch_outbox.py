"""The dispatch outbox: each job's hand-over to the worker-facing API, in the job's row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Jobs recorded before this revision were handed over synchronously, so they start as `sent`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("dispatch_status", sa.String(16), nullable=False, server_default="sent"))
        batch.add_column(sa.Column("dispatch_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("dispatch_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("dispatch_next_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("dispatch_lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("dispatch_payload", sa.JSON(), nullable=True))
    op.create_index("ix_jobs_dispatch_status_dispatch_next_at", "jobs", ["dispatch_status", "dispatch_next_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_dispatch_status_dispatch_next_at", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in (
            "dispatch_payload",
            "dispatch_lease_until",
            "dispatch_next_at",
            "dispatch_error",
            "dispatch_attempts",
            "dispatch_status",
        ):
            batch.drop_column(column)
