"""Filtered job listings and cheap polling of them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

- An index for a user's jobs filtered by status (`GET /jobs?status=…` and its `X-Total-Count`); the
  other filters narrow the rows the index (user_id, date_created DESC, id DESC) finds for the user.
- `job_changes`: each user's change counter, bumped by triggers on `jobs` (see `adapters.sql`), from
  which `GET /jobs` derives its ETag. It starts empty (a user without a row is at version 0).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from decode_userapi.adapters.sql import JOB_CHANGE_TRIGGERS, JOB_CHANGE_TRIGGERS_DROP

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_user_id_status_date_created_id",
        "jobs",
        ["user_id", "status", sa.text("date_created DESC"), sa.text("id DESC")],
    )
    op.create_table(
        "job_changes",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_job_changes"),
    )
    # The triggers' definition is the schema's (one place); a later change of them gets a migration
    # of its own that drops and creates them again.
    for statement in JOB_CHANGE_TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement.format(jobs="jobs"))


def downgrade() -> None:
    for statement in JOB_CHANGE_TRIGGERS_DROP[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_table("job_changes")
    op.drop_index("ix_jobs_user_id_status_date_created_id", table_name="jobs")
