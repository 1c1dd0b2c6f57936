"""The SQL adapters' `Database`: URLs, SQLite set-up, and database failures: `StoreUnavailable` when
the database cannot serve, `InvalidRequest` for a value it cannot store, bugs raised as they are."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import exc
from structlog.testing import capture_logs

from decode_userapi.adapters.identity.sql_users import SqlUserStore
from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database, async_url
from decode_userapi.container import build_services
from decode_userapi.domain.errors import InvalidRequest, StoreUnavailable
from decode_userapi.entrypoints.http.app import create_app
from tests.fakes.fixtures import INTERNAL_API_KEY
from tests.integration.test_job_store import PAYLOAD, make_job
from tests.integration.test_resilience import job, login, make_settings

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


async def test_an_unopenable_sqlite_file_raises_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")
    store = SqlJobStore(Database(f"sqlite:///{tmp_path / 'not-a-folder' / 'userapi.db'}"))
    with pytest.raises(StoreUnavailable):
        await store.get(1)
    await store.aclose()


async def test_sqlite_reads_park_their_connections_within_the_pool(tmp_path: Path) -> None:
    """A read on SQLite keeps its connection checked out (parked) for the next read, as on
    PostgreSQL: with a pool of one, a write after a read still gets the connection at once."""
    store = SqlJobStore(Database(f"sqlite:///{tmp_path / 'userapi.db'}", pool_size=1, pool_timeout=2))
    await store.start()
    try:
        assert await store.changes("alice") == 0  # the pool's one connection, now parked
        async with asyncio.timeout(5):
            job = await store.add_with_dispatch(make_job(), PAYLOAD)  # a transaction takes it back
            assert await store.changes("alice") > 0
            assert (await store.get(job.id)) == await store.get(job.id)  # type: ignore[arg-type]
            async with store.unit_of_work() as uow:
                await uow.delete(job.id)  # type: ignore[arg-type]
            assert await store.get(job.id) is None  # type: ignore[arg-type]
    finally:
        await store.aclose()


async def test_other_sqlite_operational_errors_are_bugs_logged_with_their_statement(tmp_path: Path) -> None:
    store = SqlJobStore(Database(f"sqlite:///{tmp_path / 'userapi.db'}"))
    await store.start()
    with closing(sqlite3.connect(tmp_path / "userapi.db")) as connection:
        connection.execute("DROP TABLE jobs")  # what a bug in a migration would do
    with capture_logs() as logs, pytest.raises(exc.OperationalError, match="no such table"):
        await store.list_for_user("alice", offset=0, limit=10)
    (logged,) = [e for e in logs if e["event"] == "database.error"]
    assert logged["log_level"] == "error" and "FROM jobs" in logged["statement"]
    await store.aclose()


@pytest.mark.postgres
async def test_a_value_postgresql_cannot_store_is_invalid_request(postgres_database_url: str) -> None:
    store = SqlJobStore(Database(postgres_database_url))
    await store.start()
    job = await store.add_with_dispatch(make_job("nul"), {"job": {}})
    with_nul = msgspec.structs.replace(job, runtime_details="half\x00way")
    with pytest.raises(InvalidRequest, match="0x00"):
        await store.replace_status(job, with_nul)  # asyncpg's fast path
    async with store.unit_of_work() as uow:  # and SQLAlchemy's
        with pytest.raises(InvalidRequest):
            await uow.save(with_nul)
    with pytest.raises(InvalidRequest):
        await store.add_with_dispatch(make_job("nul\x00name"), {"job": {}})
    assert await store.get(job.id) == job  # type: ignore[arg-type]
    await store.aclose()


@pytest.mark.postgres
async def test_over_http_a_nul_never_reaches_postgresql(tmp_path: Path, postgres_database_url: str, fake_workerfacing) -> None:
    """A NUL in a worker's runtime details is kept as U+FFFD (the log line is not lost); one in a
    user's job name is refused with 422 before the database sees it. Neither answers 500."""
    app = create_app(build_services(make_settings(tmp_path, postgres_database_url, fake_workerfacing.url)))
    async with AsyncTestClient(app=app) as client:
        headers = await login(client)
        job_id = (await client.post("/jobs", headers=headers, json=job("nul"))).json()["id"]
        update = {"job_id": job_id, "status": "running", "runtime_details": "half\u0000way"}
        r = await client.put("/_job_status", headers={"x-api-key": INTERNAL_API_KEY}, json=update)
        assert r.status_code == 200, r.text
        stored = (await client.get(f"/jobs/{job_id}", headers=headers)).json()
        assert stored["status"] == "running" and stored["runtime_details"] == "half\ufffdway"
        r = await client.post("/jobs", headers=headers, json=job("nul\u0000name"))
        assert r.status_code == 422 and "job_name" in r.json()["detail"], r.text
