"""An index for a user's jobs filtered by status: `GET /jobs?status=…` and its `X-Total-Count`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

The other filters (name prefix, application, creation time) narrow the rows the index
(user_id, date_created DESC, id DESC) of revision 0001 finds for the user.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

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


def downgrade() -> None:
    op.drop_index("ix_jobs_user_id_status_date_created_id", table_name="jobs")
