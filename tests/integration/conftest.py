"""Integration fixtures: empty databases to run against.

- `database_url`: a fresh, empty database, parametrized over SQLite (a file under `tmp_path`) and
  PostgreSQL; request it and a test runs on both.
- `store_database_url`: the same plus `None`, meaning "the in-memory adapter", for contract tests.
- PostgreSQL: `DECODE_TEST_POSTGRES_URL` names a server database to connect to (e.g.
  `postgresql://postgres@127.0.0.1:5432/test`); the session creates a scratch database next to it,
  drops it at the end, and gives each test an empty `public` schema. Without the variable the
  PostgreSQL tests skip, unless `DECODE_REQUIRE_POSTGRES=1`, which makes them fail instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import URL, make_url

POSTGRES_URL_ENV = "DECODE_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "DECODE_REQUIRE_POSTGRES"
DATABASES = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"PostgreSQL is required ({REQUIRE_POSTGRES_ENV}=1), but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _dsn(url: URL) -> str:
    """What asyncpg takes: the URL without a SQLAlchemy driver suffix."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin_execute(url: URL, sql: str) -> None:
    connection = await asyncpg.connect(_dsn(url), timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_scratch_url() -> AsyncIterator[str]:
    """The URL of a PostgreSQL database created for this test session."""
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        _postgres_unavailable(f"{POSTGRES_URL_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    base_url = make_url(base)
    name = f"decode_test_{secrets.token_hex(6)}"
    try:
        await _admin_execute(base_url, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as e:
        _postgres_unavailable(f"cannot use PostgreSQL at {base_url}: {type(e).__name__}: {e}")
    yield base_url.set(database=name).render_as_string(hide_password=False)
    await _admin_execute(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(loop_scope="session")
async def postgres_database_url(postgres_scratch_url: str) -> str:
    """The scratch database, emptied for this test: connections left over are ended, `public` recreated."""
    await _admin_execute(
        make_url(postgres_scratch_url),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid();"
        " DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
    )
    return postgres_scratch_url


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    """A SQLite file in a folder that does not exist yet (the adapter creates it)."""
    return f"sqlite:///{tmp_path / 'db' / 'userapi.db'}"


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database: SQLite, then PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_database_url")


@pytest.fixture(params=[pytest.param("memory", id="memory"), *DATABASES])
def store_database_url(request: pytest.FixtureRequest) -> str | None:
    """None (use the in-memory adapter), then a fresh SQLite and PostgreSQL database."""
    if request.param == "memory":
        return None
    return request.getfixturevalue(f"{request.param}_database_url")
