"""On PostgreSQL `Database.fetch` keeps its connections checked out of the pool between uses (a poll's
read then costs a list pop, not a pool checkout). Those parked connections still count against the
pool: transactions get theirs without waiting, a connection the server closed while parked is
replaced, and `aclose` closes them all."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from tests.integration.test_job_store import PAYLOAD, make_job

pytestmark = pytest.mark.postgres

OURS = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'decode-userapi'"


async def ours(url: str) -> list[int]:
    admin = await asyncpg.connect(url)
    try:
        return [row["pid"] for row in await admin.fetch(OURS, make_url(url).database)]
    finally:
        await admin.close()


async def test_transactions_get_a_connection_while_reads_park_them_all(postgres_database_url: str) -> None:
    """Two connections, a one-second pool timeout, and reads and transactions mixed 8 at a time:
    none waits for the pool (which would be `StoreUnavailable` after a second)."""
    database = Database(postgres_database_url, pool_size=2, pool_timeout=1.0)
    store = SqlJobStore(database)
    await store.start()
    job = await store.add_with_dispatch(make_job("parked"), PAYLOAD)
    await asyncio.gather(*(store.changes("alice") for _ in range(4)))  # both connections parked

    async def read() -> None:
        assert (await store.get(job.id)) == job  # type: ignore[arg-type]

    async def write() -> None:
        async with database.transaction() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1

    started = time.monotonic()
    await asyncio.gather(*((read if i % 3 else write)() for i in range(120)))
    assert time.monotonic() - started < 10
    assert len(await ours(postgres_database_url)) <= 2  # the pool's size, parked ones included
    await store.aclose()
    assert await ours(postgres_database_url) == []  # parked ones closed too


async def test_a_parked_connection_the_server_closed_is_replaced(postgres_database_url: str) -> None:
    database = Database(postgres_database_url, pool_size=1)
    store = SqlJobStore(database)
    await store.start()
    assert await store.changes("alice") == 0  # its connection is now parked
    admin = await asyncpg.connect(postgres_database_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'decode-userapi'"
        )
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # the driver learns of the closed socket
    await store.add_with_dispatch(make_job("after"), PAYLOAD)
    assert await store.changes("alice") > 0  # the write went through a new connection, and is read back
    await store.aclose()
