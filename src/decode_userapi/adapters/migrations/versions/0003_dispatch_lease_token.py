"""The dispatch outbox's fencing token: each claim takes a new one, and only its holder records.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A replica whose lease ran out (stalled, partitioned) could otherwise overwrite the outcome recorded
by the replica that claimed the entry after it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("dispatch_lease", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("dispatch_lease")
