"""An index for listings filtered by a job-name prefix, on PostgreSQL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

`GET /jobs?name=` compares names in code point order (`COLLATE "C"`, see `adapters.sql.binary_text`),
so that a prefix is a range whatever the database's collation. The (user_id, job_name) unique index
is in the database's collation and cannot bound that range unless the collation is C: this index
can. SQLite compares in code point order already, and its unique index serves the range.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('CREATE INDEX ix_jobs_user_id_job_name_c ON jobs (user_id, (job_name COLLATE "C"))')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_jobs_user_id_job_name_c")
