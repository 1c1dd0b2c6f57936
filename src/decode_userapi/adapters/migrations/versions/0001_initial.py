"""The jobs and users tables.

Revision ID: 0001
Revises:
Create Date: 2026-03-01

The schema `metadata.create_all` made before migrations existed: `Database.migrate()` stamps such a
database at this revision instead of creating the tables again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        # AUTOINCREMENT on SQLite: ids of deleted jobs are never reused. PostgreSQL: an identity.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("user_email", sa.String(320), nullable=True),
        sa.Column("job_name", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(32), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("application", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("entrypoint", sa.String(255), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("date_created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("date_finished", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runtime_details", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("user_id", "job_name", name="uq_jobs_user_id_job_name"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_jobs_user_id_date_created_id",
        "jobs",
        ["user_id", sa.text("date_created DESC"), sa.text("id DESC")],
    )
    op.create_table(
        "users",
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_users"),
    )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_index("ix_jobs_user_id_date_created_id", table_name="jobs")
    op.drop_table("jobs")
