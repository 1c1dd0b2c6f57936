"""Alembic's environment for the decode-userapi schema.

Alembic executes this file for each command. `Database.migrate()` (and `decode-userapi db …`) pass
the connection to use in `config.attributes["connection"]`, already inside the transaction that
holds the migration lock; the migrations run in that transaction. There is no `alembic.ini`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from decode_userapi.adapters.sql import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place: batch operations copy the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():  # a no-op inside the caller's transaction
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError(
        "decode-userapi migrations run on a connection given by Database.migrate(): use `decode-userapi db upgrade`"
    )
run_migrations(connection)
