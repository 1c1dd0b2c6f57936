"""The JobStore over SQLite or PostgreSQL. Each statement is written once, in SQLAlchemy Core; rows
map to Structs by column name."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import cache
from inspect import signature
from typing import Any

import msgspec
import structlog
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Integer,
    String,
    Text,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from decode_userapi.adapters.sql import (
    Database,
    Query,
    binary_text,
    db_now,
    execute,
    job_changes_table,
    job_events_table,
    jobs_table,
)
from decode_userapi.adapters.storage.janitor import Janitor
from decode_userapi.domain.commands import ALL_JOBS, JobFilter
from decode_userapi.domain.errors import JobNameTaken, NotFound
from decode_userapi.domain.events import (
    CREATED,
    DELETE,
    DISPATCH,
    MAX_EVENTS_PER_JOB,
    STATUS,
    TRIMMABLE,
    EventKind,
    EventNote,
    JobEvent,
)
from decode_userapi.domain.jobs import (
    ApplicationSpec,
    DispatchState,
    DispatchStatus,
    HardwareSpec,
    Job,
    JobAttributes,
    JobStatus,
)
from decode_userapi.ports.jobs import DispatchResult, JobsPage, JobStats, PendingDispatch

log = structlog.get_logger(__name__)
PRUNE_INTERVAL = 3600.0  # seconds between rounds of pruning expired events
_c = jobs_table.c
_STATUSES = {s.value: s for s in JobStatus}  # a dict lookup is several times cheaper than JobStatus(v)
_DISPATCH_STATUSES = {s.value: s for s in DispatchStatus}
_STATUS_COLUMNS = ("status", "date_started", "date_finished", "runtime_details")


def _job(
    id: int, user_id: str, user_email: str | None, job_name: str, environment: str | None, priority: int,
    application: str, version: str, entrypoint: str, attributes: str, hardware: str | None, status: str,
    date_created: datetime, date_started: datetime | None, date_finished: datetime | None,
    runtime_details: str | None, dispatch_status: str, dispatch_attempts: int, dispatch_error: str | None,
    dispatch_next_at: datetime | None,
) -> Job:  # fmt: skip
    """A `Job` from a row of a job query. Each parameter is named after its column, and the queries
    select exactly these columns in this order (`_JOB`), so `_job(*row)` maps them by name. Runs
    once per listed job: kept lean."""
    return Job(
        id=id,
        user_id=user_id,
        user_email=user_email,
        job_name=job_name,
        environment=environment,
        priority=priority,
        application=ApplicationSpec(application, version, entrypoint),
        attributes=msgspec.json.decode(attributes, type=JobAttributes),
        hardware=None if hardware is None or hardware == "null" else msgspec.json.decode(hardware, type=HardwareSpec),
        status=_STATUSES[status],
        date_created=date_created,
        date_started=date_started,
        date_finished=date_finished,
        runtime_details=runtime_details,
        dispatch=DispatchState(_DISPATCH_STATUSES[dispatch_status], dispatch_attempts, dispatch_error, dispatch_next_at),
    )


# A job's columns, selected in the order of `_job`'s parameters; JSON ones as text, which msgspec
# decodes straight into their Structs (a driver's JSON decoding would build dicts first).
_JOB = select(
    *(cast(c, Text).label(c.name) if isinstance(c.type, JSON) else c for c in (_c[n] for n in signature(_job).parameters))
)
_GET = Query(_JOB.where(_c.id == bindparam("job_id")))
_GET_FOR_UPDATE = Query(_GET.statement.with_for_update())  # PostgreSQL; SQLite locks the whole database
# A filter's shape: how many statuses, and which of name, application, created_after, created_before
# it gives. Each shape is one statement (compiled once per shape on PostgreSQL); the values are binds.
_Shape = tuple[int, bool, bool, bool, bool]


def _shape(f: JobFilter) -> _Shape:
    return (len(f.statuses), f.name is not None, f.application is not None, f.created_after is not None,
            f.created_before is not None)  # fmt: skip


def _where(shape: _Shape, _c: Any = _c) -> list[Any]:
    """The conditions of `JobFilter.matches`, for a filter of this shape, on the user's jobs (of
    `jobs_table`, or of an alias of it whose columns are `_c`)."""
    statuses, name, application, after, before = shape
    conditions: list[Any] = [_c.user_id == bindparam("user_id")]
    if statuses:
        conditions.append(_c.status.in_([bindparam(f"status_{i}") for i in range(statuses)]))
    if name:  # a prefix is a range in code point (byte) order: no LIKE, so `%` and `_` are literal
        conditions.append(binary_text(_c.job_name) >= bindparam("name_from", type_=_c.job_name.type))
        conditions.append(binary_text(_c.job_name) < bindparam("name_to", type_=_c.job_name.type))
    if application:
        conditions.append(_c.application == bindparam("application"))
    if after:
        conditions.append(_c.date_created > bindparam("created_after", type_=_c.date_created.type))
    if before:
        conditions.append(_c.date_created < bindparam("created_before", type_=_c.date_created.type))
    return conditions


@cache
def _list_query(shape: _Shape) -> Query:
    """A page of the user's jobs of this filter shape, newest first: the index (user_id,
    date_created DESC, id DESC) gives the order; with a status filter, (user_id, status, ...)."""
    return Query(
        _JOB.where(*_where(shape))
        .order_by(_c.date_created.desc(), _c.id.desc())
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )


# The user's change counter (bumped by the triggers on `jobs`), 0 before their first job.
_CHANGES_VALUE = func.coalesce(
    select(job_changes_table.c.version).where(job_changes_table.c.user_id == bindparam("user_id")).scalar_subquery(),
    literal_column("0"),
)
_CHANGES = Query(select(_CHANGES_VALUE.label("changes")))
_GET_WITH_CHANGES = Query(_GET.statement.add_columns(_CHANGES_VALUE.label("changes")))  # what GET /jobs/{id} reads
_READ_CHANGES = _GET_WITH_CHANGES.reader("changes")
_JOB_WIDTH = len(signature(_job).parameters)  # a page row: the job's columns, then `_PAGE_EXTRA`
_PAGE_EXTRA = ("total", "changes")


@cache
def _count_query(shape: _Shape) -> Query:
    """How many jobs the filter matches, and the user's change counter (for an empty page)."""
    return Query(select(func.count().label("total"), _CHANGES_VALUE.label("changes")).where(*_where(shape)))


@cache
def _page_query(shape: _Shape) -> Query:
    """`_list_query`, each row followed by how many jobs the filter matches and the user's change
    counter: what `GET /jobs` answers (its `X-Total-Count` and `ETag`) in one statement, so in one
    round trip and from one snapshot. PostgreSQL runs both subqueries once (they are uncorrelated)."""
    counted = jobs_table.alias("counted")
    total = select(func.count()).select_from(counted).where(*_where(shape, counted.c)).scalar_subquery()
    return Query(
        _list_query(shape).statement.add_columns(total.label("total"), _CHANGES_VALUE.label("changes"))
    )


def answer_statement(user_id: str, filter: JobFilter, *, offset: int, limit: int) -> Any:
    """`page_for_user`'s statement for this filter (what `GET /jobs` reads), with its values bound,
    as `filtered_statements` gives the others (to look at its plan)."""
    return _page_query(_shape(filter)).statement.params(_filter_params(user_id, filter) | {"offset": offset, "limit": limit})


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix`, in code point order; None if none."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:  # no lone surrogates: skip their block
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def _filter_params(user_id: str, f: JobFilter) -> dict[str, Any]:
    params: dict[str, Any] = {"user_id": user_id}
    for i, status in enumerate(f.statuses):
        params[f"status_{i}"] = status.value
    if f.name is not None:
        # No string is above U+10FFFF repeated: a prefix of only those ends past every name.
        params["name_from"], params["name_to"] = f.name, _prefix_end(f.name) or "\U0010ffff" * (len(f.name) + 1)
    if f.application is not None:
        params["application"] = f.application
    if f.created_after is not None:
        params["created_after"] = f.created_after
    if f.created_before is not None:
        params["created_before"] = f.created_before
    return params


_LIST = _list_query(_shape(ALL_JOBS))


def filtered_statements(user_id: str, filter: JobFilter, *, offset: int, limit: int) -> tuple[Any, Any]:
    """The page and count statements `SqlJobStore` runs for this filter, with their values bound (to
    look at their plans)."""
    params = _filter_params(user_id, filter)
    page = _list_query(_shape(filter)).statement.params(params | {"offset": offset, "limit": limit})
    return page, _count_query(_shape(filter)).statement.params(params)


# Events. A write of jobs that records an event RETURNs at least the job's `id` and `user_id`; the
# event's values are binds named `event_*` (`_note_params`), its time the database's clock, its
# `seq` the triggers' (see `adapters.sql`). On PostgreSQL the write and its event are one statement
# (`WITH written AS (<write> RETURNING ...), recorded AS (INSERT INTO job_events SELECT ... FROM
# written) SELECT * FROM written`): one round trip, as before events. SQLite has no writes in WITH:
# there, the write and then the event, in one transaction (in process: no round trips to save).
_e = job_events_table.c


def _event_values(job_id: Any, user_id: Any) -> dict[str, Any]:
    """The `job_events` columns of an event of job `job_id` (an SQL expression) of `user_id`."""
    return {
        "job_id": job_id, "user_id": user_id, "at": db_now(), "kind": bindparam("event_kind", type_=String()),
        "status": bindparam("event_status", type_=String()), "details": bindparam("event_details", type_=Text()),
        "ignored": bindparam("event_ignored", type_=Boolean()),
    }  # fmt: skip


def _note_params(note: EventNote) -> dict[str, Any]:
    status = None if note.status is None else note.status.value
    return {"event_kind": note.kind, "event_status": status, "event_details": note.details, "event_ignored": note.ignored}


_ADD_EVENT = Query(
    insert(job_events_table)
    .values(_event_values(bindparam("event_job_id", type_=BigInteger()), bindparam("event_user_id", type_=String())))
    .returning(_e.id)
)


class _Recorded:
    """A write of jobs (`write`, RETURNING `id`, `user_id`, ...) that records an event per row written:
    `query` is both in one statement, for PostgreSQL; its rows are `write`'s, read with `query.reader`."""

    __slots__ = ("owner", "query", "write")

    def __init__(self, write: Any) -> None:
        self.write = write
        written = write.cte("written")
        values = _event_values(written.c.id, written.c.user_id)
        recorded = insert(job_events_table).from_select(list(values), select(*values.values()).select_from(written))
        self.query = Query(select(*written.c).add_cte(recorded.cte("recorded")), read_only=False)
        self.owner = self.query.reader("id", "user_id")

    async def run(self, connection: AsyncConnection, params: dict[str, Any]) -> list[Sequence[Any]]:
        """Write and record, on `connection` (in a transaction)."""
        if connection.dialect.name == "postgresql":
            return list(await execute(connection, self.query.statement, params))
        rows: list[Sequence[Any]] = list(await execute(connection, self.write, params))
        for row in rows:
            job_id, user_id = self.owner(row)
            await execute(connection, _ADD_EVENT.statement, params | {"event_job_id": job_id, "event_user_id": user_id})
        return rows


def _event(id: int, seq: int, job_id: int, at: datetime, kind: EventKind, status: str | None, details: str | None,
           ignored: bool) -> JobEvent:  # fmt: skip
    """A `JobEvent` from a row of an event query (`_EVENT` selects these columns in this order)."""
    return JobEvent(
        id=id, seq=seq, job_id=job_id, at=at, kind=kind, status=None if status is None else _STATUSES[status],
        details=details, ignored=bool(ignored),
    )  # fmt: skip


_EVENT = select(*(_e[n] for n in signature(_event).parameters))
_EVENTS_FOR_JOB = Query(
    _EVENT.where(_e.job_id == bindparam("job_id"), _e.user_id == bindparam("user_id"), _e.id > bindparam("after"))
    .order_by(_e.id)
    .limit(bindparam("limit"))
)
_EVENTS_SINCE = Query(
    _EVENT.where(_e.user_id == bindparam("user_id"), _e.seq > bindparam("after_seq"), _e.ignored.is_(False))
    .order_by(_e.seq, _e.id)
    .limit(bindparam("limit"))
)
_DELETE_EVENTS = delete(job_events_table).where(_e.job_id == bindparam("job_id"))
# Retention: of the `batch` oldest events (the primary key's first entries: ids grow with time), those
# recorded before `before`. Bounded work without an index on `at`: a batch that is not all old ends
# the round. Replicas pruning at once skip each other's rows (SKIP LOCKED; SQLite has one writer):
# neither waits, nor can their deletes deadlock.
_OLDEST = select(_e.id, _e.at).order_by(_e.id).limit(bindparam("batch")).with_for_update(skip_locked=True).subquery("oldest")
# Trimming: the jobs with events above `after` (a range of the primary key) that have more than
# `keep` events (counted on the (job_id, id) index); then, per job, its status and dispatch events
# older than its `keep`-th newest.
_recent, _history = job_events_table.alias("recent"), job_events_table.alias("history")
_CROWDED = (
    select(_e.job_id)
    .where(_e.job_id.in_(select(_recent.c.job_id).where(_recent.c.id > bindparam("after"), _recent.c.id <= bindparam("upto"))))
    .group_by(_e.job_id)
    .having(func.count() > bindparam("keep"))
)
_TRIM_JOB = delete(job_events_table).where(
    _e.job_id == bindparam("job_id"),
    _e.kind.in_(TRIMMABLE),
    _e.id
    < select(_history.c.id)
    .where(_history.c.job_id == bindparam("job_id"))
    .order_by(_history.c.id.desc())
    .offset(bindparam("keep", type_=Integer()) - 1)
    .limit(1)
    .scalar_subquery(),
)
_PRUNE_EVENTS = delete(job_events_table).where(
    _e.id.in_(select(_OLDEST.c.id).where(_OLDEST.c.at < bindparam("before", type_=_e.at.type)))
)


_INSERTED = ("dispatch_status", "dispatch_attempts", "dispatch_payload")  # and a job's, but id and dispatch_*
# One INSERT, atomic by itself: the job and its outbox entry, due now by the database's clock.
_INSERT = Query(
    insert(jobs_table)  # PostgreSQL's construct; SQLite compiles the same ON CONFLICT clause
    .values(
        {c.name: bindparam(c.name) for c in _c if c.name in _INSERTED or not c.name.startswith(("id", "dispatch_"))}
        | {"dispatch_next_at": db_now()}
    )
    .on_conflict_do_nothing(index_elements=["user_id", "job_name"])
    .returning(_c.id, _c.user_id, _c.dispatch_next_at)
)
_INSERT_RECORDED = _Recorded(_INSERT.statement)  # and its `created` event
_REPLACE_STATUS = _Recorded(  # compare and set: new_* written where the stored values are still old_*
    update(jobs_table)
    .where(_c.id == bindparam("job_id"), *(_c[n].is_not_distinct_from(bindparam(f"old_{n}")) for n in _STATUS_COLUMNS))
    .values({n: bindparam(f"new_{n}") for n in _STATUS_COLUMNS})
    .returning(_c.id, _c.user_id)
)
_DELETE_RECORDED = _Recorded(delete(jobs_table).where(_c.id == bindparam("job_id")).returning(_c.id, _c.user_id))
_CANCEL_DISPATCH = (  # a canceled job's pending dispatch: never sent, and no lease holder records an outcome
    update(jobs_table)
    .where(_c.id == bindparam("job_id"), _c.dispatch_status == DispatchStatus.pending.value)
    .values(dispatch_status=DispatchStatus.canceled.value, dispatch_next_at=None)
    .values(dispatch_lease_until=None, dispatch_payload=None)
    .returning(_c.id)
)
# Due, unleased entries get a new lease token (the fence `record_dispatch` checks) and a lease that
# ends by the database's clock. Replicas skip the rows another one is claiming (SKIP LOCKED;
# SQLite has one writer at a time anyway).
# A claimed entry's columns, named and ordered as `PendingDispatch`'s fields: `PendingDispatch(*row)`.
_CLAIMED = {
    "job_id": _c.id, "lease": _c.dispatch_lease, "payload": _c.dispatch_payload, "attempts": _c.dispatch_attempts,
    "date_created": _c.date_created,
}  # fmt: skip
_CLAIM = Query(
    update(jobs_table)
    .where(
        _c.id.in_(
            select(_c.id)
            .where(
                _c.dispatch_status == DispatchStatus.pending.value,
                _c.dispatch_next_at <= db_now(),
                or_(_c.dispatch_lease_until.is_(None), _c.dispatch_lease_until <= db_now()),
            )
            .order_by(_c.dispatch_next_at)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
        )
    )
    .values(dispatch_lease=_c.dispatch_lease + 1, dispatch_lease_until=db_now(bindparam("lease_seconds", type_=Float)))
    .returning(*(_CLAIMED[name].label(name) for name in signature(PendingDispatch).parameters))
)


def _record(*, retry: bool) -> _Recorded:
    """The outcome of an attempt, if the lease token is still the entry's; releases the lease. A
    delivered or failed entry's payload is not needed again."""
    retry_at = db_now(bindparam("retry_in", type_=Float))
    due = {"dispatch_next_at": retry_at} if retry else {"dispatch_next_at": None, "dispatch_payload": None}
    return _Recorded(
        update(jobs_table)
        .where(_c.id == bindparam("job_id"), _c.dispatch_lease == bindparam("lease"), _c.dispatch_status == "pending")
        .values({n: bindparam(n) for n in ("dispatch_status", "dispatch_attempts", "dispatch_error")})
        .values(dispatch_lease_until=None, **due)
        .returning(_c.id, _c.user_id)
    )


_RECORD_RETRY, _RECORD_DONE = _record(retry=True), _record(retry=False)


_SAME = ("user_id", "user_email", "job_name", "environment", "priority", "runtime_details", *_STATUS_COLUMNS[1:3])


def job_to_row(job: Job) -> dict[str, Any]:
    """The `jobs` columns for `job`, except `id` and the dispatch columns (the outbox's own)."""
    app, hardware = job.application, job.hardware
    return {name: getattr(job, name) for name in _SAME} | {
        "application": app.application, "version": app.version, "entrypoint": app.entrypoint,
        "attributes": msgspec.to_builtins(job.attributes), "status": job.status.value, "date_created": job.date_created,
        "hardware": None if hardware is None else msgspec.to_builtins(hardware),
    }  # fmt: skip


_READ_ADDED = _INSERT_RECORDED.query.reader("id", "dispatch_next_at")
_CREATED = _note_params(EventNote(CREATED, JobStatus.queued))


class SqlJobUnitOfWork:
    """The job store's operations inside one transaction on one connection. `changed`: the owners
    of the events recorded (told to `on_change` after the commit)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self.changed: set[str] = set()

    async def get(self, job_id: int, *, for_update: bool = False) -> Job | None:
        query = _GET_FOR_UPDATE if for_update else _GET
        row: Sequence[Any] | None = (await execute(self._connection, query.statement, {"job_id": job_id})).one_or_none()
        return None if row is None else _job(*row)

    async def save(self, job: Job) -> None:
        if job.id is None:
            raise ValueError("save() takes a job read from the store; this one has no id")
        statement = update(jobs_table).where(_c.id == job.id).values(**job_to_row(job))
        result: Any = await execute(self._connection, statement)  # a CursorResult: it has a rowcount
        if result.rowcount == 0:
            raise NotFound(f"job {job.id} not found")

    async def delete(self, job_id: int) -> None:
        await execute(self._connection, _DELETE_EVENTS, {"job_id": job_id})
        rows = await _DELETE_RECORDED.run(self._connection, {"job_id": job_id} | _note_params(EventNote(DELETE)))
        self.changed.update(_DELETE_RECORDED.owner(row)[1] for row in rows)

    async def cancel_dispatch(self, job_id: int) -> bool:
        return (await execute(self._connection, _CANCEL_DISPATCH, {"job_id": job_id})).first() is not None

    async def add_event(self, job_id: int, user_id: str, note: EventNote) -> None:
        params = {"event_job_id": job_id, "event_user_id": user_id} | _note_params(note)
        await execute(self._connection, _ADD_EVENT.statement, params)
        if not note.ignored:
            self.changed.add(user_id)

    async def claim_dispatches(self, lease_seconds: float, limit: int) -> list[PendingDispatch]:
        rows: Iterable[Sequence[Any]] = await execute(
            self._connection, _CLAIM.statement, {"limit": limit, "lease_seconds": lease_seconds}
        )
        return [PendingDispatch(*row) for row in rows]

    async def record_dispatch(self, entry: PendingDispatch, result: DispatchResult) -> bool:
        retry = result.status is DispatchStatus.pending
        params: dict[str, Any] = {"job_id": entry.job_id, "lease": entry.lease, "dispatch_status": result.status.value}
        params |= {"dispatch_attempts": result.attempts, "dispatch_error": result.error, "retry_in": result.retry_in or 0.0}
        params |= _note_params(EventNote(DISPATCH, details=result.describe()))
        recorded = _RECORD_RETRY if retry else _RECORD_DONE
        rows = await recorded.run(self._connection, params)
        self.changed.update(recorded.owner(row)[1] for row in rows)
        return bool(rows)


class SqlJobStore:
    """Jobs in the `jobs` table of `database` (which other stores may share), and their events.

    `on_change(user_id)` is called after a write that recorded events of the user's jobs (not
    ignored ones) has committed, except on PostgreSQL, where the events table's trigger notifies
    `decode_job_events` (every replica listening hears it, this one too)."""

    def __init__(
        self,
        database: Database,
        *,
        on_change: Callable[[str], None] | None = None,
        event_retention: float | None = None,
        prune_interval: float = PRUNE_INTERVAL,
        events_per_job: int = MAX_EVENTS_PER_JOB,
    ) -> None:
        self._database = database
        self._on_change = on_change if database.backend != "postgresql" else None
        # Events older than `event_retention` seconds are pruned every `prune_interval` (None: kept),
        # and each job's history trimmed to `events_per_job` (looking only at jobs with new events).
        self._events_per_job = events_per_job
        self._trimmed_up_to = 0
        # The first round waits a minute or two, spread so that replicas started together do not
        # prune together (they may: it only costs the later one a wait).
        self._pruner = Janitor(
            "job-events",
            self._prune_expired,
            event_retention or 0.0,
            prune_interval if event_retention else None,
            first_delay=min(prune_interval, 60.0 + random.uniform(0.0, 60.0)),
        )

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[SqlJobUnitOfWork]:
        async with self._database.transaction() as connection:
            uow = SqlJobUnitOfWork(connection)
            yield uow
        self._changed(*uow.changed)

    def _changed(self, *user_ids: str) -> None:
        if self._on_change is not None:
            for user_id in user_ids:
                self._on_change(user_id)

    async def _write_recorded(self, recorded: _Recorded, params: dict[str, Any]) -> list[Sequence[Any]]:
        """A hot path's write and its event: one statement on PostgreSQL (through `Database.fetch`)."""
        if self._database.backend == "postgresql":
            return await self._database.fetch(recorded.query, params)
        async with self._database.transaction() as connection:
            rows = await recorded.run(connection, params)
        self._changed(*{recorded.owner(row)[1] for row in rows})
        return rows

    async def get(self, job_id: int) -> Job | None:
        rows = await self._database.fetch(_GET, {"job_id": job_id})
        return _job(*rows[0]) if rows else None

    async def get_with_changes(self, job_id: int, user_id: str) -> tuple[Job | None, int]:
        rows = await self._database.fetch(_GET_WITH_CHANGES, {"job_id": job_id, "user_id": user_id})
        if not rows:
            return None, await self.changes(user_id)
        return _job(*rows[0][:_JOB_WIDTH]), _READ_CHANGES(rows[0])

    async def list_for_user(
        self, user_id: str, *, offset: int, limit: int, filter: JobFilter = ALL_JOBS
    ) -> list[Job]:
        if filter.is_empty:  # the hot path: no filter to look at
            query, params = _LIST, {"user_id": user_id}
        else:
            query, params = _list_query(_shape(filter)), _filter_params(user_id, filter)
        rows = await self._database.fetch(query, params | {"offset": offset, "limit": limit})
        return [_job(*row) for row in rows]

    async def page_for_user(self, user_id: str, *, offset: int, limit: int, filter: JobFilter = ALL_JOBS) -> JobsPage:
        shape, params = _shape(filter), _filter_params(user_id, filter)
        page = _page_query(shape)
        rows = await self._database.fetch(page, params | {"offset": offset, "limit": limit})
        if rows:
            total, changes = page.reader(*_PAGE_EXTRA)(rows[0])
            return JobsPage(jobs=[_job(*row[:_JOB_WIDTH]) for row in rows], total=total, changes=changes)
        count = _count_query(shape)  # past the end, or nothing matches: the count and counter alone
        total, changes = count.reader(*_PAGE_EXTRA)((await self._database.fetch(count, params))[0])
        return JobsPage(jobs=[], total=total, changes=changes)

    async def changes(self, user_id: str) -> int:
        rows = await self._database.fetch(_CHANGES, {"user_id": user_id})
        return int(rows[0][0])

    async def add_with_dispatch(self, job: Job, payload: dict[str, Any]) -> Job:
        outbox = {"dispatch_status": DispatchStatus.pending.value, "dispatch_attempts": 0, "dispatch_payload": payload}
        rows = await self._write_recorded(_INSERT_RECORDED, job_to_row(job) | outbox | _CREATED)
        if not rows:
            raise JobNameTaken(f"you already have a job named {job.job_name!r}")
        job_id, due = _READ_ADDED(rows[0])
        return msgspec.structs.replace(job, id=job_id, dispatch=DispatchState(next_attempt_at=due))

    async def replace_status(self, before: Job, after: Job, *, details: str | None = None) -> bool:
        params = {"job_id": after.id, "old_status": before.status.value, "new_status": after.status.value}
        for name in _STATUS_COLUMNS[1:]:
            params["old_" + name], params["new_" + name] = getattr(before, name), getattr(after, name)
        params |= _note_params(EventNote(STATUS, after.status, details))
        return bool(await self._write_recorded(_REPLACE_STATUS, params))

    async def add_event(self, job_id: int, user_id: str, note: EventNote) -> None:
        params = {"event_job_id": job_id, "event_user_id": user_id} | _note_params(note)
        await self._database.fetch(_ADD_EVENT, params)
        if not note.ignored:
            self._changed(user_id)

    async def events_for_job(self, job_id: int, user_id: str, *, after: int = 0, limit: int) -> list[JobEvent]:
        rows = await self._database.fetch(_EVENTS_FOR_JOB, {"job_id": job_id, "user_id": user_id, "after": after, "limit": limit})
        return [_event(*row) for row in rows]

    async def events_since(self, user_id: str, after_seq: int, limit: int) -> list[JobEvent]:
        rows = await self._database.fetch(_EVENTS_SINCE, {"user_id": user_id, "after_seq": after_seq, "limit": limit})
        return [_event(*row) for row in rows]

    async def prune_events(self, before: datetime, *, batch: int = 1000) -> int:
        pruned = 0
        while True:
            async with self._database.transaction() as connection:
                result: Any = await execute(connection, _PRUNE_EVENTS, {"before": before, "batch": batch})
            count: int = result.rowcount
            pruned += count
            if count < batch:
                return pruned

    async def trim_events(self, keep: int, *, after_id: int = 0) -> tuple[int, int]:
        async with self._database.transaction() as connection:
            newest = (await execute(connection, select(func.max(_e.id)))).scalar() or 0
            if newest <= after_id:
                return 0, after_id
            params = {"after": after_id, "upto": newest, "keep": keep}
            crowded = [job_id for (job_id,) in await execute(connection, _CROWDED, params)]
        trimmed = 0
        for job_id in crowded:  # a transaction each: a long history is trimmed without holding the rest
            async with self._database.transaction() as connection:
                result: Any = await execute(connection, _TRIM_JOB, {"job_id": job_id, "keep": keep})
            trimmed += int(result.rowcount)
        return trimmed, newest

    async def _prune_expired(self, before: datetime) -> int:
        pruned = await self.prune_events(before)
        trimmed, self._trimmed_up_to = await self.trim_events(self._events_per_job, after_id=self._trimmed_up_to)
        if pruned or trimmed:
            log.info("job_events.pruned", expired=pruned, trimmed=trimmed, recorded_before=before.isoformat())
        return pruned + trimmed

    async def stats(self) -> JobStats:
        by_status: dict[str, int] = {}
        backlog = 0
        async with self._database.transaction() as connection:
            statement = select(_c.status, _c.dispatch_status, func.count()).group_by(_c.status, _c.dispatch_status)
            rows: Iterable[Sequence[Any]] = await execute(connection, statement)
            for status, dispatch, count in rows:
                by_status[status] = by_status.get(status, 0) + count
                backlog += count if dispatch == DispatchStatus.pending.value else 0
            oldest = None
            if backlog:  # the outbox's index finds the pending entries
                pending = _c.dispatch_status == DispatchStatus.pending.value
                oldest = (await execute(connection, select(func.min(_c.date_created)).where(pending))).scalar()
        return JobStats(by_status=by_status, dispatch_backlog=backlog, oldest_pending=oldest)

    async def start(self) -> None:
        await self._database.start()
        self._pruner.start()

    async def aclose(self) -> None:
        await self._pruner.aclose()
        await self._database.aclose()
