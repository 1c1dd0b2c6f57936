"""The SQL database shared by the SQL adapters: one async engine, the schema, error translation.

SQLite transactions begin with `BEGIN IMMEDIATE`, which takes the database's single write lock up
front: units of work run one at a time (across processes too), so a read-modify-write is never
interleaved and `SELECT ... FOR UPDATE`, which SQLite lacks, is not needed. Waiting writers queue on
`busy_timeout`. On PostgreSQL units of work run concurrently and lock rows with `FOR UPDATE`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Executable,
    Identity,
    Index,
    Integer,
    MetaData,
    Result,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    exc,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

from decode_userapi.domain.errors import StoreUnavailable

log = structlog.get_logger(__name__)

_DIALECT_INSERTS = {"postgresql": pg_insert, "sqlite": sqlite_insert}
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
# SQLSTATE classes that mean "the server cannot serve us now": connection exception, insufficient
# resources (too many connections), operator intervention (shutting down, starting up).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def async_url(url: str | URL) -> URL:
    """The async-driver URL for `sqlite:///…`, `postgresql://…`, `postgres://…` or their async forms."""
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    target = _ASYNC_DRIVERS.get(backend)
    if target is None or (driver and f"{backend}+{driver}" != target):
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:///path or postgresql://…")
    return parsed.set(drivername=target)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored and returned in UTC (SQLite keeps no offset: read as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

jobs_table = Table(
    "jobs",
    metadata,
    # AUTOINCREMENT on SQLite: a deleted job's id is never handed out again (the worker-facing API
    # may still send updates for it). PostgreSQL identities never repeat anyway.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("user_email", String(320)),
    Column("job_name", String(255), nullable=False),
    Column("environment", String(32)),
    Column("priority", Integer, nullable=False),
    Column("application", String(255), nullable=False),
    Column("version", String(255), nullable=False),
    Column("entrypoint", String(255), nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("hardware", JSON(none_as_null=True)),
    Column("status", String(32), nullable=False),
    Column("date_created", UTCDateTime, nullable=False),
    Column("date_started", UTCDateTime),
    Column("date_finished", UTCDateTime),
    Column("runtime_details", Text),
    UniqueConstraint("user_id", "job_name"),
    sqlite_autoincrement=True,
)
Index(
    "ix_jobs_user_id_date_created_id",
    jobs_table.c.user_id,
    jobs_table.c.date_created.desc(),
    jobs_table.c.id.desc(),
)

users_table = Table(
    "users",
    metadata,
    Column("username", String(255), primary_key=True),
    Column("email", String(320)),
    Column("groups", JSON, nullable=False),
    Column("password_hash", Text, nullable=False),
)


def _is_unavailable(error: BaseException) -> bool:
    if isinstance(error, exc.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return (
            isinstance(error, (exc.OperationalError, exc.InterfaceError))
            or error.connection_invalidated
            or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        )
    return isinstance(error, (exc.TimeoutError, OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError))


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn "cannot reach or use the database now" errors into `StoreUnavailable`."""
    try:
        yield
    except Exception as e:
        if not _is_unavailable(e):
            raise
        log.warning("database.unavailable", error=f"{type(e).__name__}: {e}")
        raise StoreUnavailable("the database is unavailable, please try again later") from e


async def execute(connection: AsyncConnection, statement: Executable) -> Result[Any]:
    """`connection.execute(statement)`, with `translate_errors`."""
    with translate_errors():
        return await connection.execute(statement)


def _sqlite_on_connect(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's implicit BEGIN off: see `_sqlite_begin`
        cursor = dbapi_connection.cursor()
        for pragma in (
            f"busy_timeout = {busy_timeout_ms}",
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "foreign_keys = ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return on_connect


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_file(url: URL) -> Path:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ValueError("SQLite needs a file path (sqlite:///path/to/userapi.db); in-memory SQLite is not supported")
    return Path(database)


class Database:
    """One async engine over `url`, which may be a user-facing `sqlite:///…` or `postgresql://…` URL.

    The pool settings apply to both; `connect_timeout` (seconds) to PostgreSQL, `busy_timeout`
    (seconds a unit of work waits for SQLite's write lock) to SQLite.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        busy_timeout: float = 30.0,
        echo: bool = False,
    ) -> None:
        self.url = async_url(url)
        self.backend = self.url.get_backend_name()
        self._sqlite_file = _sqlite_file(self.url) if self.backend == "sqlite" else None
        self._start_lock = asyncio.Lock()
        self._started = False
        options: dict[str, Any] = {
            "echo": echo,
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": pool_timeout,
        }
        if self.backend == "postgresql":
            options.update(
                pool_pre_ping=True,
                connect_args={"timeout": connect_timeout, "server_settings": {"application_name": "decode-userapi"}},
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.backend == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect(int(busy_timeout * 1000)))
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    async def start(self) -> None:
        """Create the schema if missing. Idempotent: several stores share one `Database`."""
        async with self._start_lock:
            if self._started:
                return
            if self._sqlite_file is not None:
                self._sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            async with self.transaction() as conn:
                await conn.run_sync(metadata.create_all)
            self._started = True

    async def aclose(self) -> None:
        """Close pooled connections. Idempotent; the engine reconnects if used again."""
        self._started = False
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One connection in one transaction: committed if the block exits normally, else rolled back.

        Only the database's own failures become `StoreUnavailable`; errors of the block pass as they are.
        """
        with translate_errors():
            conn = await self.engine.connect()
        try:
            with translate_errors():
                await conn.begin()
            yield conn
            with translate_errors():
                await conn.commit()
        finally:
            with translate_errors():
                await conn.close()  # rolls back a transaction still open

    def insert_or_ignore(self, table: Table, values: Mapping[str, Any], *conflict_columns: str) -> Any:
        """`INSERT … ON CONFLICT (conflict_columns) DO NOTHING`: a conflict inserts no row, raises nothing.

        Unlike catching `IntegrityError`, this leaves a PostgreSQL transaction usable.
        """
        statement = _DIALECT_INSERTS[self.backend](table).values(**values)
        return statement.on_conflict_do_nothing(index_elements=list(conflict_columns))
