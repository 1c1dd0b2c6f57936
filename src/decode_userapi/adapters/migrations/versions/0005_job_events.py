"""Each job's history of events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

- `job_events`: one row per change of a job (created, status, dispatch attempt, cancel, delete) and
  per status update that changed nothing (`ignored`), indexed for a job's history (job_id, id) and
  a user's live stream (user_id, seq); triggers give each event its `seq` from the owner's
  `job_changes` counter, and on PostgreSQL notify `decode_job_events` (see `adapters.sql`).
- Jobs recorded before have no events: their history starts with their next change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from decode_userapi.adapters.sql import JOB_EVENT_TRIGGERS, JOB_EVENT_TRIGGERS_DROP

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32)),
        sa.Column("details", sa.Text()),
        sa.Column("ignored", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])
    op.create_index("ix_job_events_user_id_seq", "job_events", ["user_id", "seq"])
    for statement in JOB_EVENT_TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement.format(events="job_events"))


def downgrade() -> None:
    for statement in JOB_EVENT_TRIGGERS_DROP[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_index("ix_job_events_user_id_seq", table_name="job_events")
    op.drop_index("ix_job_events_job_id_id", table_name="job_events")
    op.drop_table("job_events")
