"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Written by hand, for SQLite and PostgreSQL alike (SQLite runs `op.batch_alter_table` by copying the
table). Do not import the application's tables or types: a migration describes the schema as it was.
tests/integration/test_migrations.py checks that head matches `decode_userapi.adapters.sql.metadata`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
