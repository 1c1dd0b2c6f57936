"""The SQL adapters' `Database`: URLs, SQLite set-up, and database failures as `StoreUnavailable`."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from decode_userapi.adapters.identity.sql_users import SqlUserStore
from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database, async_url
from decode_userapi.domain.errors import StoreUnavailable

NOTHING_LISTENS = "postgresql://postgres@127.0.0.1:1/none"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///data/userapi.db", "sqlite+aiosqlite:///data/userapi.db"),
        ("sqlite:////abs/userapi.db", "sqlite+aiosqlite:////abs/userapi.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@db:5432/api", "postgresql+asyncpg://u:p@db:5432/api"),
        ("postgres://u@db/api", "postgresql+asyncpg://u@db/api"),
        ("postgresql+asyncpg://u@db/api?ssl=require", "postgresql+asyncpg://u@db/api?ssl=require"),
    ],
)
def test_user_facing_urls_get_async_drivers(given: str, expected: str) -> None:
    assert async_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize("url", ["mysql://u@db/api", "postgresql+psycopg2://u@db/api", "sqlite+pysqlite:///x.db"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        async_url(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SQLite needs a file path"):
        Database(url)


async def test_sqlite_start_creates_the_folder_and_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "userapi.db"
    database = Database(f"sqlite:///{path}")
    await database.start()
    await database.start()  # idempotent
    await database.aclose()
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"jobs", "users"} <= tables


async def test_unreachable_postgresql_raises_store_unavailable() -> None:
    database = Database(NOTHING_LISTENS, connect_timeout=2)
    jobs, users = SqlJobStore(database), SqlUserStore(database)
    with pytest.raises(StoreUnavailable) as raised:
        await jobs.start()
    assert isinstance(raised.value.__cause__, OSError)
    with pytest.raises(StoreUnavailable):
        async with jobs.unit_of_work() as uow:
            await uow.get(1)
    with pytest.raises(StoreUnavailable):
        await users.get("alice")
    await jobs.aclose()


async def test_a_locked_sqlite_database_raises_store_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'userapi.db'}"
    holder, waiter = SqlJobStore(Database(url)), SqlJobStore(Database(url, busy_timeout=0.05))
    await holder.start()
    async with holder.unit_of_work() as uow:  # holds SQLite's write lock until the block ends
        await uow.get(1)
        with pytest.raises(StoreUnavailable):
            async with waiter.unit_of_work() as other:
                await other.get(1)
    await holder.aclose()
    await waiter.aclose()


async def test_errors_raised_inside_a_unit_of_work_pass_unchanged(sqlite_database_url: str) -> None:
    store = SqlJobStore(Database(sqlite_database_url))
    await store.start()
    with pytest.raises(ConnectionRefusedError):  # an OSError, but not the database's
        async with store.unit_of_work():
            raise ConnectionRefusedError("the worker-facing API is down")
    await store.aclose()
