"""The SQL database shared by the SQL adapters: one async engine, the schema, error translation.

SQLite transactions begin with `BEGIN IMMEDIATE`, which takes the database's single write lock up
front: units of work run one at a time (across processes too), so a read-modify-write is never
interleaved and `SELECT ... FOR UPDATE`, which SQLite lacks, is not needed. Waiting writers queue on
`busy_timeout`. A single read (`Database.fetch` of a SELECT) takes no lock: in WAL mode it reads the
last commit, alongside a writer. On PostgreSQL units of work run concurrently and lock rows with `FOR UPDATE`.

The tables below are the source of truth; the Alembic migrations in `migrations/versions` build them
(the same revisions on SQLite and PostgreSQL), and tests/integration/test_migrations.py keeps the two in
step. `Database.start()` upgrades the schema to head, or only checks it is there.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec
import structlog
from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
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
    false,
    inspect,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import URL, Connection, Dialect, make_url
from sqlalchemy.engine.interfaces import PoolProxiedConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import greenlet_spawn

from decode_userapi.domain.errors import InvalidRequest, StoreUnavailable

if TYPE_CHECKING:  # Alembic is imported only to migrate: it is half a second of every start-up
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = structlog.get_logger(__name__)

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
# SQLSTATE classes that mean "the server cannot serve us now": connection exception, insufficient
# resources (too many connections), operator intervention (shutting down, starting up).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest migration (tests/integration/test_migrations.py checks it is Alembic's head): a
# database already there starts without loading Alembic.
HEAD_REVISION = "0006"
# The revision whose schema `metadata.create_all` made before the migrations existed.
ADOPTED_REVISION = "0001"
# The key of the PostgreSQL advisory lock that serialises migrations across processes ("decodeua").
MIGRATION_LOCK_KEY = 0x6465636F64657561
# How long `Database.fetch` keeps a connection out of the pool between uses before giving it back:
# the pool's own checks (recycling, the checkout listener) then see every connection this often.
PARKED_SECONDS = 60.0


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
        if value is None or value.tzinfo is UTC:  # asyncpg returns UTC already: the hot path
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class db_now(FunctionElement[datetime]):
    """The database's clock, plus `seconds` (an SQL expression) if given: lease and due times come
    from the one clock every replica shares, never from a replica's own."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(db_now)
def _db_now(element: db_now, compiler: Any, **kw: Any) -> str:
    seconds = [compiler.process(clause, **kw) for clause in element.clauses]
    if compiler.dialect.name == "sqlite":  # as SQLAlchemy stores datetimes there: UTC, microseconds
        plus = "".join(f", printf('%+.3f seconds', {s})" for s in seconds)
        return f"(strftime('%Y-%m-%d %H:%M:%f', 'now'{plus}) || '000')"
    return "".join(["(now()", *(f" + {s} * interval '1 second'" for s in seconds), ")"])


class binary_text(FunctionElement[str]):
    """A text column compared in code point order (bytes of UTF-8), whatever the database's collation:
    `COLLATE "C"` on PostgreSQL; SQLite's default (BINARY) already is. A prefix is then a range."""

    type = String()
    inherit_cache = True


@compiles(binary_text)
def _binary_text(element: binary_text, compiler: Any, **kw: Any) -> str:
    (column,) = (compiler.process(clause, **kw) for clause in element.clauses)
    return column if compiler.dialect.name == "sqlite" else f'({column} COLLATE "C")'


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
    # The outbox: each job's hand-over to the worker-facing API, recorded in the job's own row so that
    # the job and its dispatch are written in one statement and deleted together. Rows from before
    # the outbox (migration 0002) had been sent synchronously: hence the server default "sent".
    Column("dispatch_status", String(16), nullable=False, default="pending", server_default="sent"),
    Column("dispatch_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("dispatch_error", Text),
    Column("dispatch_next_at", UTCDateTime),
    Column("dispatch_lease_until", UTCDateTime),
    Column("dispatch_payload", JSON(none_as_null=True)),
    # The fencing token of the current lease, bumped by every claim: an outcome is recorded only by
    # the holder of the token it was claimed with (migration 0003).
    Column("dispatch_lease", Integer, nullable=False, server_default="0"),
    UniqueConstraint("user_id", "job_name"),
    sqlite_autoincrement=True,
)
Index(
    "ix_jobs_user_id_date_created_id",
    jobs_table.c.user_id,
    jobs_table.c.date_created.desc(),
    jobs_table.c.id.desc(),
)
# Listings filtered by status, and their counts (migration 0004). The other filters narrow the
# user's rows found by the index above.
Index(
    "ix_jobs_user_id_status_date_created_id",
    jobs_table.c.user_id,
    jobs_table.c.status,
    jobs_table.c.date_created.desc(),
    jobs_table.c.id.desc(),
)

# Listings filtered by a name prefix (migration 0006): names are compared in code point order
# (`binary_text`), which the (user_id, job_name) unique index serves only where the database's own
# collation is C. PostgreSQL only: on SQLite that unique index already is in code point order.
Index("ix_jobs_user_id_job_name_c", jobs_table.c.user_id, binary_text(jobs_table.c.job_name)).ddl_if(dialect="postgresql")

Index("ix_jobs_dispatch_status_dispatch_next_at", jobs_table.c.dispatch_status, jobs_table.c.dispatch_next_at)

# Each user's change counter, bumped by a trigger on `jobs` in the statement that writes a job (insert,
# delete, or an update of a column a user sees): every write path, present and future, single
# statements and units of work alike, bumps it in its own transaction, on every replica. `GET /jobs`
# derives its ETag from it with one primary-key read. A claim only takes a lease (`dispatch_lease*`
# columns): not a change anyone sees, no bump. Migration 0004.
job_changes_table = Table(
    "job_changes",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("version", BigInteger, nullable=False),
)
# The columns whose update a user sees (in `Job`): all but the lease and the payload.
_VISIBLE = ", ".join(c.name for c in jobs_table.c if c.name not in ("id", "dispatch_lease", "dispatch_lease_until", "dispatch_payload"))
_BUMP = (
    "INSERT INTO job_changes (user_id, version) VALUES ({owner}, 1)"
    " ON CONFLICT (user_id) DO UPDATE SET version = job_changes.version + 1"
)
# The triggers' DDL, by dialect, on the table `{jobs}`: run by migration 0004 and by
# `metadata.create_all` alike (which names the table by its schema, when it has one).
JOB_CHANGE_TRIGGERS: dict[str, tuple[str, ...]] = {
    "postgresql": (
        (
            "CREATE OR REPLACE FUNCTION job_changes_bump() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN"
            f" IF TG_OP = 'DELETE' THEN {_BUMP.format(owner='OLD.user_id')};"
            f" ELSE {_BUMP.format(owner='NEW.user_id')};"
            " END IF;"
            " RETURN NULL;"
            " END $$"
        ),
        (
            "CREATE TRIGGER jobs_changed AFTER INSERT OR DELETE OR UPDATE OF"
            f" {_VISIBLE} ON {{jobs}} FOR EACH ROW EXECUTE FUNCTION job_changes_bump()"
        ),
    ),
    "sqlite": (
        f"CREATE TRIGGER jobs_inserted AFTER INSERT ON {{jobs}} BEGIN {_BUMP.format(owner='NEW.user_id')}; END",
        f"CREATE TRIGGER jobs_updated AFTER UPDATE OF {_VISIBLE} ON {{jobs}} BEGIN {_BUMP.format(owner='NEW.user_id')}; END",
        f"CREATE TRIGGER jobs_deleted AFTER DELETE ON {{jobs}} BEGIN {_BUMP.format(owner='OLD.user_id')}; END",
    ),
}
JOB_CHANGE_TRIGGERS_DROP: dict[str, tuple[str, ...]] = {
    "postgresql": ("DROP TRIGGER IF EXISTS jobs_changed ON jobs", "DROP FUNCTION IF EXISTS job_changes_bump()"),
    "sqlite": tuple(f"DROP TRIGGER IF EXISTS jobs_{what}" for what in ("inserted", "updated", "deleted")),
}
for _dialect, _statements in JOB_CHANGE_TRIGGERS.items():
    for _statement in _statements:
        _ddl = DDL(_statement.replace("%", "%%").format(jobs="%(fullname)s"))
        event.listen(jobs_table, "after_create", _ddl.execute_if(dialect=_dialect))

# Each job's history (migration 0005): one row per change of a job, and per update that changed
# nothing (`ignored`). No foreign key: deleting a job deletes its events in the same transaction
# and records one `delete` event, which outlives the job (the live stream's news of it).
job_events_table = Table(
    "job_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True),
    Column("job_id", BigInteger, nullable=False),
    Column("user_id", String(255), nullable=False),
    # The owner's change counter as this event's write left it: set by the triggers below, whatever
    # the statement inserting the event says.
    Column("seq", BigInteger, nullable=False, server_default="0"),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(32)),
    Column("details", Text),
    Column("ignored", Boolean, nullable=False, server_default=false()),
    sqlite_autoincrement=True,
)
Index("ix_job_events_job_id_id", job_events_table.c.job_id, job_events_table.c.id)  # a job's history, paged
Index("ix_job_events_user_id_seq", job_events_table.c.user_id, job_events_table.c.seq)  # the stream's resume
# An event takes its `seq` from the owner's `job_changes` row: one that is not ignored bumps it and
# takes the new value, under the row's lock, which its transaction holds until it commits, so one
# user's `seq` values commit in increasing order on PostgreSQL too (an identity would not: values
# are handed out at insert, and commit in any order). An ignored event takes the current value
# and bumps nothing. The `jobs` triggers bump the counter again for the job's write in the same
# transaction (gaps are fine; the counter only ever grows). On PostgreSQL an event that is not
# ignored also notifies `decode_job_events` with its owner (NOTIFY is delivered at commit, if any).
# What an event costs the server is its row and three index entries: the trigger is a small part of
# it (bench/RESULTS.md, "Job events").
_EVENT_BUMP = (
    "INSERT INTO job_changes (user_id, version) VALUES (NEW.user_id, 1)"
    " ON CONFLICT (user_id) DO UPDATE SET version = job_changes.version + 1"
)
_EVENT_SEQ = "coalesce((SELECT version FROM job_changes WHERE user_id = NEW.user_id), 0)"
EVENTS_CHANNEL = "decode_job_events"
JOB_EVENT_TRIGGERS: dict[str, tuple[str, ...]] = {
    # One trigger function does it all (each trigger call costs): NOTIFY from a BEFORE trigger is
    # queued with the transaction like any other, and delivered only if it commits.
    "postgresql": (
        (
            "CREATE OR REPLACE FUNCTION job_events_seq() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN"
            f" IF NEW.ignored THEN NEW.seq := {_EVENT_SEQ};"
            f" ELSE {_EVENT_BUMP} RETURNING version INTO NEW.seq;"
            f" PERFORM pg_notify('{EVENTS_CHANNEL}', NEW.user_id);"
            " END IF;"
            " RETURN NEW;"
            " END $$"
        ),
        "CREATE TRIGGER job_events_seq BEFORE INSERT ON {events} FOR EACH ROW EXECUTE FUNCTION job_events_seq()",
    ),
    "sqlite": (
        (
            "CREATE TRIGGER job_events_seq AFTER INSERT ON {events} BEGIN"
            " INSERT INTO job_changes (user_id, version) SELECT NEW.user_id, 1 WHERE NOT NEW.ignored"
            " ON CONFLICT (user_id) DO UPDATE SET version = job_changes.version + 1;"
            f" UPDATE {{events}} SET seq = {_EVENT_SEQ} WHERE id = NEW.id; END"
        ),
    ),
}
JOB_EVENT_TRIGGERS_DROP: dict[str, tuple[str, ...]] = {
    "postgresql": ("DROP TRIGGER IF EXISTS job_events_seq ON job_events", "DROP FUNCTION IF EXISTS job_events_seq()"),
    "sqlite": ("DROP TRIGGER IF EXISTS job_events_seq",),
}
for _dialect, _statements in JOB_EVENT_TRIGGERS.items():
    for _statement in _statements:
        _ddl = DDL(_statement.replace("%", "%%").format(events="%(fullname)s"))
        event.listen(job_events_table, "after_create", _ddl.execute_if(dialect=_dialect))

users_table = Table(
    "users",
    metadata,
    Column("username", String(255), primary_key=True),
    Column("email", String(320)),
    Column("groups", JSON, nullable=False),
    Column("password_hash", Text, nullable=False),
)


# SQLite's "cannot use the database now" (a writer holding the lock past busy_timeout, a file that
# cannot be opened, a failing disk). Any other OperationalError is a bug of ours.
_SQLITE_UNAVAILABLE = ("database is locked", "database table is locked", "unable to open database", "disk i/o")


def _is_unavailable(error: BaseException) -> bool:
    if isinstance(error, sqlite3.Error):  # opening a connection for `Database.fetch` (not wrapped)
        return str(error).lower().startswith(_SQLITE_UNAVAILABLE)
    if isinstance(error, exc.DBAPIError):
        if isinstance(error.orig, sqlite3.Error):
            return str(error.orig).lower().startswith(_SQLITE_UNAVAILABLE)
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return (
            isinstance(error, (exc.OperationalError, exc.InterfaceError))
            or error.connection_invalidated
            or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        )
    return isinstance(error, (exc.TimeoutError, OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError))


@contextmanager
def translate_errors(statement: Any = None) -> Iterator[None]:
    """"Cannot reach or use the database now" becomes `StoreUnavailable`, a value it refuses (SQLSTATE
    class 22, e.g. a NUL in text) `InvalidRequest`; other database errors are bugs: logged, raised."""
    try:
        yield
    except Exception as e:
        if _is_unavailable(e):
            log.warning("database.unavailable", error=f"{type(e).__name__}: {e}")
            raise StoreUnavailable("the database is unavailable, please try again later") from e
        orig = e.orig if isinstance(e, exc.DBAPIError) else e
        if not isinstance(e, (exc.DBAPIError, asyncpg.PostgresError)):
            raise
        if str(getattr(orig, "sqlstate", None) or "").startswith("22"):
            raise InvalidRequest("a value cannot be stored: " + str(orig).partition("\n")[0]) from e
        sql = e.statement if isinstance(e, exc.DBAPIError) else getattr(statement, "statement", statement)
        log.error("database.error", error=f"{type(e).__name__}: {e}", statement=str(sql))
        raise


async def execute(
    connection: AsyncConnection, statement: Executable, params: Mapping[str, Any] | None = None
) -> Result[Any]:
    """`connection.execute(statement, params)`, with `translate_errors`."""
    with translate_errors(statement):
        return await connection.execute(statement, params)


_Compiled = tuple[str, tuple[tuple[str, Any], ...]]  # asyncpg SQL; each `$n`'s name and bind processor


class Query:
    """One statement, written once in SQLAlchemy Core with named `bindparam`s, for `Database.fetch`.
    Its rows are read by column name, alike for SQLAlchemy's rows and asyncpg's records (`reader`)."""

    __slots__ = ("names", "read_only", "statement")

    def __init__(self, statement: Any, *, read_only: bool | None = None) -> None:
        self.statement = statement
        self.names = tuple(statement.exported_columns.keys())  # a SELECT's columns, or RETURNING's
        # A read takes no write lock on SQLite (`Database.fetch`). A SELECT that writes in a WITH
        # clause says `read_only=False`.
        self.read_only = bool(statement.is_select) if read_only is None else read_only

    def reader(self, *names: str) -> Callable[[Sequence[Any]], Any]:
        """A function of a row giving the values of the columns `names` (a tuple if several), looked
        up by name once: it then runs at C speed."""
        return itemgetter(*(self.names.index(name) for name in names))


def _discard_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout: a connection the server has closed (restart, failover, idle timeout) is known
    to asyncpg without a round trip; SQLAlchemy then discards it and checks out another."""
    if record.driver_connection.is_closed():
        raise exc.DisconnectionError("the server closed this connection")


def json_text(value: Any) -> str:
    """JSON as text, by msgspec (several times faster than the json module)."""
    return msgspec.json.encode(value).decode()


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


# The execution option of a connection that only reads (`Database.transaction(read_only=True)`).
_READ_ONLY = "decode_read_only"


def _sqlite_begin(connection: Any) -> None:
    """A unit of work takes the write lock up front. A read begins nothing: its one SELECT runs in
    autocommit, in a read transaction of its own (WAL: never waits for a writer, nor makes one wait)."""
    if not connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_file(url: URL) -> Path:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ValueError("SQLite needs a file path (sqlite:///path/to/userapi.db); in-memory SQLite is not supported")
    return Path(database)


class SchemaNotCurrent(RuntimeError):
    """The database schema is not at the revision this version of decode-userapi needs."""


# Alembic runs a migration through module-level proxies (`alembic.context`, `alembic.op`), so two
# migrations interleaved on one event loop would use each other's: they take turns on this lock.
_IN_PROCESS_MIGRATION_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)
# The tables of `ADOPTED_REVISION`: a database with these and no `alembic_version` table is adopted.
_ADOPTED_TABLES = frozenset({"jobs", "users"})


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code (there is no alembic.ini): our migrations, on `connection`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the migrations shipped with this version of decode-userapi."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _is_known(script: ScriptDirectory, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        script.get_revision(revision)
    except CommandError:
        return False
    return True


def _unknown_revision(revision: str) -> SchemaNotCurrent:
    return SchemaNotCurrent(
        f"the database schema is at revision {revision!r}, which this version of decode-userapi does not know"
        " (did a newer version migrate it?): run a version that knows it"
    )


def _current_revision(connection: Connection) -> str | None:
    """The revision in Alembic's `alembic_version` table, read without Alembic; None if none."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
    """Upgrade to head on `connection`, adopting a database made by `create_all`; (before, after)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config(connection)
    before = _current_revision(connection)
    if before is not None and not _is_known(ScriptDirectory.from_config(config), before):
        raise _unknown_revision(before)
    if before is None:
        present = _ADOPTED_TABLES & set(inspect(connection).get_table_names())
        if present == _ADOPTED_TABLES:
            command.stamp(config, ADOPTED_REVISION)
            log.info("database.adopted", revision=ADOPTED_REVISION)
        elif present:
            raise SchemaNotCurrent(
                f"the database has the table(s) {', '.join(sorted(present))} but not"
                f" {', '.join(sorted(_ADOPTED_TABLES - present))}, and no migration history: cannot adopt it"
            )
    command.upgrade(config, "head")
    return before, _current_revision(connection)


class Database:
    """One async engine over `url`, which may be a user-facing `sqlite:///…` or `postgresql://…` URL.

    The pool settings apply to both; `connect_timeout` (seconds) to PostgreSQL, `busy_timeout`
    (seconds a unit of work waits for SQLite's write lock) to SQLite. `start()` upgrades the schema
    to head with `migrate_on_start`, else only checks that it is at head.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = 10,
        max_overflow: int = 0,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        busy_timeout: float = 30.0,
        echo: bool = False,
        migrate_on_start: bool = True,
    ) -> None:
        self.url = async_url(url)
        self.migrate_on_start = migrate_on_start
        self.backend = self.url.get_backend_name()
        self._sqlite_file = _sqlite_file(self.url) if self.backend == "sqlite" else None
        self._start_lock = asyncio.Lock()
        self._started = False
        self._compiled: dict[Query, _Compiled] = {}
        # SQLite's reads: the SQL with `?` parameters, each one's name and bind processor, the values
        # the statement binds itself, and the columns that have a result processor, with it (None: none).
        self._sqlite_compiled: dict[Query, tuple[str, tuple[tuple[str, Any], ...], dict[str, Any], tuple[Any, ...] | None]] = {}
        # Checkouts wait their turn here, first come first served, so the pool itself is never waited
        # on. SQLAlchemy's asyncio pool hands a returned connection to whoever asks next, not to the
        # longest waiter (the waiter it passes over queues again at the back): with 32 requests on 10
        # connections, most waited nothing and a few up to 1.7 s, the tail of GET /jobs
        # (bench/RESULTS.md, "Tail latency"). asyncio's Semaphore hands each release to its oldest waiter.
        self._pool_timeout = pool_timeout
        self._permits = pool_size + max_overflow if pool_size > 0 and max_overflow >= 0 else 0
        self._gate = asyncio.Semaphore(self._permits) if self._permits else None
        # Connections `fetch` keeps checked out of the pool between its uses (its reads on SQLite), newest last,
        # with when each was checked out: taking one back is a list pop, where a pool checkout and
        # return cost ~60 us of CPU (two greenlet switches and the pool's bookkeeping), half of a
        # poll's whole read (bench/RESULTS.md, "Cheap polling"). They count against the pool: a
        # transaction gives parked ones back until the pool has a connection for it (`_make_room`).
        self._parked: list[tuple[PoolProxiedConnection, float]] = []
        self._fetching = 0  # connections `fetch` has in use now
        self._transacting = 0  # connections `transaction` has in use now
        options: dict[str, Any] = {
            "echo": echo,
            # A fixed pool: overflow connections are opened and closed again under load, and each
            # PostgreSQL connection costs milliseconds of CPU to set up (measured: ~100 per 5 s).
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": pool_timeout,
            # msgspec is several times faster than the json module for the JSON columns.
            "json_serializer": json_text,
            "json_deserializer": msgspec.json.decode,
        }
        if self.backend == "postgresql":
            options.update(
                # No `pool_pre_ping`: its round trip on every checkout cost ~0.2 ms of CPU, as much as
                # a whole job read (measured). `_discard_closed` catches what it is mostly for, a
                # server restart, for free; connections older than this are replaced anyway.
                pool_recycle=1800,
                connect_args={"timeout": connect_timeout, "server_settings": {"application_name": "decode-userapi"}},
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.backend == "postgresql":
            event.listen(self.engine.sync_engine.pool, "checkout", _discard_closed)
        if self.backend == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect(int(busy_timeout * 1000)))
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    async def start(self) -> None:
        """Upgrade the schema to head, or with `migrate_on_start=False` check that it is there.

        Idempotent: several stores share one `Database`. Raises `SchemaNotCurrent` if the schema is
        not (and, without `migrate_on_start`, may not be brought) at head.
        """
        async with self._start_lock:
            if self._started:
                return
            if await self.schema_revision() == HEAD_REVISION:  # the usual start: nothing to do
                self._started = True
                return
            if self.migrate_on_start:
                await self.migrate()
            else:
                await self._require_head()
            self._started = True

    async def migrate(self) -> None:
        """Upgrade the schema to head, in one transaction on one connection.

        Safe to run from several processes at once: on PostgreSQL they queue on an advisory lock
        held until the transaction ends, on SQLite on the write lock `BEGIN IMMEDIATE` takes. A
        database made by `metadata.create_all` (tables, no `alembic_version`) is stamped at
        `ADOPTED_REVISION` first. A migration that fails leaves the schema as it was.
        """
        if self._sqlite_file is not None:
            self._sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        in_process = _IN_PROCESS_MIGRATION_LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with in_process, self.transaction() as conn:
            if self.backend == "postgresql":
                await execute(conn, text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=MIGRATION_LOCK_KEY))
            with translate_errors():
                before, after = await conn.run_sync(_upgrade)
        if before != after:
            log.info("database.migrated", from_revision=before, to_revision=after)

    async def schema_revision(self) -> str | None:
        """The revision the schema is at: None if migrations never ran (an empty or `create_all` database)."""
        if self._sqlite_file is not None and not self._sqlite_file.exists():
            return None  # do not create the file just to look
        async with self.transaction() as conn:
            with translate_errors():
                return await conn.run_sync(_current_revision)

    async def _require_head(self) -> None:
        revision, head = await self.schema_revision(), head_revision()
        if revision == head:
            return
        from alembic.script import ScriptDirectory

        if revision is not None and not _is_known(ScriptDirectory.from_config(alembic_config()), revision):
            raise _unknown_revision(revision)
        found = "has no schema revision (empty, or made before migrations)" if revision is None else f"is at {revision}"
        raise SchemaNotCurrent(
            f"the database schema {found}, this version of decode-userapi needs revision {head}:"
            " run `decode-userapi db upgrade`, or start with migrations on"
        )

    async def aclose(self) -> None:
        """Close pooled connections. Idempotent; the engine reconnects if used again."""
        self._started = False
        while self._parked:
            await self._give_back(self._parked.pop()[0])
        await self.engine.dispose()
        if self._permits:  # a new gate: the old one may be bound to an event loop that is gone
            self._gate = asyncio.Semaphore(self._permits)

    @asynccontextmanager
    async def transaction(self, *, read_only: bool = False) -> AsyncIterator[AsyncConnection]:
        """One connection in one transaction: committed if the block exits normally, else rolled back.

        Only the database's own failures become `StoreUnavailable`; errors of the block pass as they
        are. `read_only` (one SELECT; SQLite): no transaction and no write lock, the statement is
        its own read transaction.
        """
        gate = await self._turn()
        try:
            await self._make_room()
            self._transacting += 1
            try:
                with translate_errors():
                    conn = await self.engine.connect()
                try:
                    with translate_errors():
                        if read_only and self.backend == "sqlite":
                            await conn.execution_options(**{_READ_ONLY: True})
                        await conn.begin()
                    yield conn
                    with translate_errors():
                        await conn.commit()
                finally:
                    with translate_errors():
                        await conn.close()  # rolls back a transaction still open
            finally:
                self._transacting -= 1
        finally:
            if gate is not None:
                gate.release()

    async def _make_room(self) -> None:
        """Give parked connections back to the pool until it has one for a caller holding a turn
        (the turns are as many as the pool's connections)."""
        while self._parked and self._fetching + self._transacting + len(self._parked) >= self._permits:
            await self._give_back(self._parked.pop(0)[0])  # the oldest

    async def _give_back(self, pooled: PoolProxiedConnection) -> None:
        """Return a connection `fetch` checked out to the pool (whose reset may need the driver, so
        in a greenlet); one the server has closed is dropped by the pool's checkout listener."""
        with translate_errors():
            await greenlet_spawn(pooled.close)

    async def _checkout(self) -> tuple[PoolProxiedConnection, float]:
        """A connection for `fetch`: the newest parked one that is open and not too old, else one
        checked out of the pool now."""
        while self._parked:
            pooled, since = self._parked.pop()
            driver: Any = pooled.driver_connection
            closed = self.backend == "postgresql" and driver.is_closed()  # (a SQLite file has no server)
            if time.monotonic() - since < PARKED_SECONDS and not closed:
                return pooled, since
            await self._give_back(pooled)
        with translate_errors():
            return await self.engine.raw_connection(), time.monotonic()

    async def _turn(self) -> asyncio.Semaphore | None:
        """Wait, in arrival order, until a pooled connection is free for this caller; the gate to
        release afterwards. Waiting longer than the pool timeout is `StoreUnavailable`."""
        gate = self._gate
        if gate is None:
            return None
        if not gate.locked():  # a connection is free and nobody is waiting: no suspension
            await gate.acquire()
            return gate
        try:
            async with asyncio.timeout(self._pool_timeout):
                await gate.acquire()
        except TimeoutError as e:
            with translate_errors():
                raise exc.TimeoutError(
                    f"no database connection free within {self._pool_timeout:g} s ({self._permits} in the pool)"
                ) from e
        return gate

    async def fetch(self, query: Query, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """The rows of `query` (a read, or a write with RETURNING that commits by itself), read with
        `query.reader`. On PostgreSQL the statement, compiled once for asyncpg, runs on the pooled driver
        connection directly, in autocommit: asyncpg's prepared-statement cache and C row decoding
        without SQLAlchemy's per-row work (measured about three times cheaper for a page of jobs).
        On SQLite a read does the same through aiosqlite (one hop to the connection's thread, where
        SQLAlchemy's path takes five: bench/RESULTS.md), its values converted by the processors
        SQLAlchemy would use; a write runs through SQLAlchemy in a transaction of its own."""
        if self.backend != "postgresql" and not query.read_only:
            async with self.transaction() as conn:
                return list(await execute(conn, query.statement, params))
        gate = await self._turn()
        try:
            self._fetching += 1
            pooled, since = await self._checkout()
            done = False
            try:
                with translate_errors(query):
                    driver: Any = pooled.driver_connection
                    if self.backend == "postgresql":
                        sql, binds = self._compiled.get(query) or await self._compile(query, driver)
                        rows: list[Sequence[Any]] = await driver.fetch(sql, *[p(params[n]) if p else params[n] for n, p in binds])
                    else:
                        rows = await self._fetch_sqlite(driver, query, params)
                done = True
                return rows
            finally:
                # In autocommit nothing is left open on it: parked for the next caller (with a bounded
                # pool, whose turns count the parked ones). Failed or cancelled: back to the pool,
                # which resets it or drops it.
                if done and gate is not None:
                    self._parked.append((pooled, since))
                else:
                    await self._give_back(pooled)
        finally:
            self._fetching -= 1
            if gate is not None:
                gate.release()

    async def _fetch_sqlite(self, driver: Any, query: Query, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """`query`'s rows from an aiosqlite connection in autocommit: the SELECT is its own read
        transaction. Values as SQLAlchemy gives them (SQLite keeps dates as text, booleans as 0/1)."""
        compiled = self._sqlite_compiled.get(query)
        if compiled is None:
            dialect = self.engine.dialect
            statement = query.statement.compile(dialect=dialect)
            names = statement.positiontup or ()
            binds = tuple((n, statement.binds[n].type.dialect_impl(dialect).bind_processor(dialect)) for n in names)
            # The values the statement carries itself (SQLite's `OFFSET 0` after a LIMIT without one).
            own = {n: b.value for n, b in statement.binds.items() if n in names and not b.required}
            columns = query.statement.exported_columns
            processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
            processed = tuple((i, p) for i, p in enumerate(processors) if p is not None)
            compiled = (str(statement), binds, own, processed or None)
            self._sqlite_compiled[query] = compiled
        sql, binds, own, results = compiled
        values = {**own, **params} if own else params
        args = [p(values[n]) if p else values[n] for n, p in binds]
        try:
            rows = await driver.execute_fetchall(sql, args)
        except sqlite3.Error as e:  # as SQLAlchemy raises it: `translate_errors` knows those
            raise exc.DBAPIError.instance(sql, args, e, sqlite3.Error) from e
        if results is None:
            return list(rows)
        converted: list[Sequence[Any]] = []
        for row in rows:
            values_of_row = list(row)
            for i, p in results:
                values_of_row[i] = p(values_of_row[i])
            converted.append(values_of_row)
        return converted

    async def _compile(self, query: Query, driver: Any) -> _Compiled:
        """`query` as asyncpg SQL with `$n` parameters, and each one's name and bind processor in
        `$n` order; checked once against the columns the server says the statement returns."""
        dialect = self.engine.dialect
        compiled = query.statement.compile(dialect=dialect)
        names = compiled.positiontup or ()
        binds = tuple((n, compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect)) for n in names)
        returned = tuple(a.name for a in (await driver.prepare(str(compiled))).get_attributes())
        if returned != query.names:
            raise RuntimeError(f"the compiled statement returns {returned}, not {query.names}")
        self._compiled[query] = (str(compiled), binds)
        return self._compiled[query]

    def insert_or_ignore(self, table: Table, values: Mapping[str, Any], *conflict_columns: str) -> Any:
        """`INSERT … ON CONFLICT (conflict_columns) DO NOTHING`: a conflict inserts no row, raises nothing.

        Unlike catching `IntegrityError`, this leaves a PostgreSQL transaction usable.
        """
        statement = pg_insert(table).values(**values)  # SQLite compiles the same ON CONFLICT clause
        return statement.on_conflict_do_nothing(index_elements=list(conflict_columns))
