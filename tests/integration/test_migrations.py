"""The Alembic migrations own the schema: they build exactly the tables in `adapters.sql`, on SQLite and
PostgreSQL, run safely from several processes at once, and adopt databases made by `create_all`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url

from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import (
    ADOPTED_REVISION,
    HEAD_REVISION,
    MIGRATION_LOCK_KEY,
    Database,
    SchemaNotCurrent,
    alembic_config,
    head_revision,
    jobs_table,
    metadata,
    users_table,
)
from decode_userapi.entrypoints import cli


def test_the_head_revision_constant_is_alembics_head() -> None:
    """Start-up skips Alembic when the schema is at HEAD_REVISION: a new migration must bump it."""
    assert head_revision() == HEAD_REVISION


def test_a_start_at_head_does_not_load_alembic(tmp_path) -> None:
    """Alembic is half a second of start-up: a database already at head starts without it."""
    code = f"""
import asyncio, sys
from decode_userapi.adapters.sql import Database
async def main():
    url = "sqlite:///{tmp_path}/db.sqlite"
    first = Database(url); await first.start(); await first.aclose()
    for name in [m for m in sys.modules if m == "alembic" or m.startswith("alembic.")]:
        del sys.modules[name]
    again = Database(url); await again.start(); await again.aclose()
    print("alembic" in sys.modules)
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


async def run(database: Database, fn: Callable[[Connection], Any]) -> Any:
    """`fn(connection)` in one transaction."""
    async with database.transaction() as conn:
        return await conn.run_sync(fn)


async def alembic(database: Database, fn: Callable[[Config, str], None], revision: str) -> None:
    """An Alembic command (`command.upgrade`, `command.downgrade`, ...) on one of `database`'s connections."""
    await run(database, lambda conn: fn(alembic_config(conn), revision))


def folder_for(database_url: str) -> None:
    """Create a SQLite file's folder, which only `Database.start()`/`migrate()` would otherwise create."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)


# An index on an expression (`job_name COLLATE "C"`) that Alembic reflects as plain columns and so
# always reports as changed: it is compared by its definition instead (`test_the_name_prefix_index`).
EXPRESSION_INDEXES = {"ix_jobs_user_id_job_name_c"}


def differences(conn: Connection) -> list[Any]:
    found = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    return [d for d in found if not (d[0] in ("add_index", "remove_index") and d[1].name in EXPRESSION_INDEXES)]


@pytest.mark.postgres
async def test_the_name_prefix_index(postgres_database_url: str) -> None:
    """Migrated and created from the table definitions alike: (user_id, job_name COLLATE "C")."""
    definitions = []
    for how in ("migrate", "create_all"):
        database = Database(postgres_database_url)
        async with database.transaction() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        if how == "migrate":
            await database.migrate()
        else:
            async with database.transaction() as conn:
                await conn.run_sync(metadata.create_all)
        async with database.transaction() as conn:
            row = await conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_jobs_user_id_job_name_c'"))
            definitions.append(row.scalar_one())
        await database.aclose()
    assert definitions[0] == definitions[1]
    assert definitions[0].endswith('(user_id, job_name COLLATE "C")'), definitions[0]


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"sqlite_sequence"}


def schema_of(conn: Connection, schema: str | None = None) -> dict[str, Any]:
    """What reflection sees of our tables, plus SQLite's own DDL text (it keeps AUTOINCREMENT only there)."""
    inspector = inspect(conn)
    described: dict[str, Any] = {}
    for name in sorted(metadata.tables):
        described[name] = {
            "columns": [{**column, "type": str(column["type"])} for column in inspector.get_columns(name, schema)],
            "primary key": inspector.get_pk_constraint(name, schema),
            "unique": inspector.get_unique_constraints(name, schema),
            "indexes": inspector.get_indexes(name, schema),
        }
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT sql FROM sqlite_master WHERE tbl_name IN ('jobs', 'users') AND sql <> ''"))
        described["ddl"] = sorted(" ".join(sql.split()) for (sql,) in rows)
    return described


async def test_head_matches_the_table_definitions(database_url: str) -> None:
    database = Database(database_url)
    await database.migrate()
    assert await run(database, differences) == []
    assert await database.schema_revision() == head_revision()
    await database.aclose()


async def test_head_builds_what_create_all_builds(database_url: str, tmp_path: Path) -> None:
    """What `compare_metadata` does not look at: identity/AUTOINCREMENT, index order on SQLite, names."""
    migrated = Database(database_url)
    await migrated.migrate()
    if migrated.backend == "sqlite":
        reference, schema = Database(f"sqlite:///{tmp_path / 'reference.db'}", migrate_on_start=False), None
        await run(reference, metadata.create_all)
    else:
        reference, schema = migrated, "reference"
        await run(migrated, lambda conn: conn.execute(text("CREATE SCHEMA reference")))
        in_reference = {"schema_translate_map": {None: schema}}
        await run(migrated, lambda conn: metadata.create_all(conn.execution_options(**in_reference)))
    assert await run(migrated, schema_of) == await run(reference, lambda conn: schema_of(conn, schema))
    await migrated.aclose()
    await reference.aclose()


async def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    database = Database(database_url)
    await database.start()
    await alembic(database, command.downgrade, "base")
    assert await run(database, table_names) == {"alembic_version"}
    assert await database.schema_revision() is None
    await database.migrate()
    assert await run(database, differences) == []
    await database.aclose()


async def test_concurrent_migrations_from_several_processes_all_succeed(database_url: str) -> None:
    databases = [Database(database_url) for _ in range(3)]  # three engines: as if three replicas started
    await asyncio.gather(*(database.migrate() for database in databases))
    assert await run(databases[0], differences) == []
    for database in databases:
        assert await database.schema_revision() == head_revision()
        await database.aclose()


async def test_a_migration_waits_for_the_lock_another_process_holds(database_url: str) -> None:
    """PostgreSQL: the advisory lock; SQLite: the write lock. (In one process, migrations also take turns.)"""
    folder_for(database_url)
    holder, migrating = Database(database_url), Database(database_url)
    async with holder.transaction() as conn:  # on SQLite, BEGIN IMMEDIATE took the write lock
        if holder.backend == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=MIGRATION_LOCK_KEY))
        migration = asyncio.create_task(migrating.migrate())
        if holder.backend == "postgresql":  # the server shows the waiter: no need to give it time
            waiting = text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            for _ in range(500):
                if (await conn.execute(waiting)).scalar_one():
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the migration never waited for the lock")
        else:  # SQLite shows no sign of a writer waiting for its lock: give it the time to try
            await asyncio.sleep(0.3)
        assert not migration.done()
        assert await conn.run_sync(table_names) == set()
    await migration
    assert await migrating.schema_revision() == head_revision()
    await holder.aclose()
    await migrating.aclose()


async def test_a_database_made_before_migrations_is_adopted_with_its_rows(database_url: str) -> None:
    folder_for(database_url)
    database = Database(database_url)
    # What `metadata.create_all` made before migrations existed: revision 0001's tables, no history.
    await alembic(database, command.upgrade, ADOPTED_REVISION)
    await run(database, lambda conn: conn.execute(text("DROP TABLE alembic_version")))
    row = {"username": "alice", "email": None, "groups": ["users"], "password_hash": "x"}
    await run(database, lambda conn: conn.execute(users_table.insert().values(**row)))
    await database.start()
    assert await database.schema_revision() == head_revision()
    assert await run(database, differences) == []
    assert await run(database, lambda conn: conn.execute(users_table.select()).scalar_one()) == "alice"
    await database.aclose()


async def test_a_database_with_only_some_of_the_tables_is_not_adopted(database_url: str) -> None:
    folder_for(database_url)
    database = Database(database_url)
    await run(database, users_table.create)
    with pytest.raises(SchemaNotCurrent, match=r"has the table.s. users but not jobs.*cannot adopt"):
        await database.start()
    await database.aclose()


async def test_without_migrate_on_start_an_empty_database_is_refused(database_url: str) -> None:
    database = Database(database_url, migrate_on_start=False)
    with pytest.raises(SchemaNotCurrent, match=r"no schema revision.*run `decode-userapi db upgrade`"):
        await database.start()
    if database.backend == "sqlite":
        assert not Path(make_url(database_url).database or "").exists()  # looking created no file
    await database.migrate()
    await database.start()  # at head now
    await database.aclose()


async def test_a_revision_from_a_newer_version_is_refused_not_downgraded(database_url: str) -> None:
    database = Database(database_url)
    await database.migrate()
    await run(database, lambda conn: conn.execute(text("UPDATE alembic_version SET version_num = '9999'")))
    for started in (database, Database(database_url, migrate_on_start=False)):
        with pytest.raises(SchemaNotCurrent, match="revision '9999', which this version of decode-userapi does not"):
            await started.start()
        await started.aclose()


def test_cli_db_upgrade_and_current(
    sqlite_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    monkeypatch.setenv("DATABASE_URL", sqlite_database_url)
    monkeypatch.setattr("decode_userapi.logging.configure_logging", lambda: None)  # leave structlog alone
    assert cli.main(["db", "current"]) == 0
    assert capsys.readouterr().out == "none (no schema yet: run `decode-userapi db upgrade`)\n"
    assert cli.main(["db", "upgrade"]) == 0
    assert cli.main(["db", "current"]) == 0
    assert capsys.readouterr().out.endswith(f"{head_revision()} (head)\n" * 2)  # after structlog's default output


async def test_0003_keeps_the_dispatches_pending_before_it_claimable(database_url: str) -> None:
    folder_for(database_url)
    database = Database(database_url)
    await alembic(database, command.upgrade, "0002")
    row = {
        "user_id": "alice", "job_name": "queued-before", "priority": 0, "application": "decode",
        "version": "v1", "entrypoint": "train", "attributes": {}, "status": "queued",
        "date_created": datetime(2026, 1, 1, tzinfo=UTC), "dispatch_status": "pending",
        "dispatch_next_at": datetime(2026, 1, 1, tzinfo=UTC), "dispatch_payload": {"job": {}},
    }  # fmt: skip
    await run(database, lambda conn: conn.execute(jobs_table.insert().values(**row)))
    await database.start()
    store = SqlJobStore(database)
    async with store.unit_of_work() as uow:
        (entry,) = await uow.claim_dispatches(60, 10)
    assert (entry.lease, entry.payload) == (1, {"job": {}})
    await database.aclose()
