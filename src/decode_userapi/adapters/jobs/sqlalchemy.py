"""The JobStore over SQLite or PostgreSQL. Each statement is written once, in SQLAlchemy Core; rows
map to Structs by column name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import cache
from inspect import signature
from typing import Any

import msgspec
from sqlalchemy import JSON, Float, Text, bindparam, cast, delete, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from decode_userapi.adapters.sql import Database, Query, binary_text, db_now, execute, job_changes_table, jobs_table
from decode_userapi.domain.commands import ALL_JOBS, JobFilter
from decode_userapi.domain.errors import JobNameTaken, NotFound
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
_INSERTED = ("dispatch_status", "dispatch_attempts", "dispatch_payload")  # and a job's, but id and dispatch_*
# One INSERT, atomic by itself: the job and its outbox entry, due now by the database's clock.
_INSERT = Query(
    insert(jobs_table)  # PostgreSQL's construct; SQLite compiles the same ON CONFLICT clause
    .values(
        {c.name: bindparam(c.name) for c in _c if c.name in _INSERTED or not c.name.startswith(("id", "dispatch_"))}
        | {"dispatch_next_at": db_now()}
    )
    .on_conflict_do_nothing(index_elements=["user_id", "job_name"])
    .returning(_c.id, _c.dispatch_next_at)
)
_REPLACE_STATUS = Query(  # compare and set: new_* written where the stored values are still old_*
    update(jobs_table)
    .where(_c.id == bindparam("job_id"), *(_c[n].is_not_distinct_from(bindparam(f"old_{n}")) for n in _STATUS_COLUMNS))
    .values({n: bindparam(f"new_{n}") for n in _STATUS_COLUMNS})
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


def _record(*, retry: bool) -> Query:
    """The outcome of an attempt, if the lease token is still the entry's; releases the lease. A
    delivered or failed entry's payload is not needed again."""
    retry_at = db_now(bindparam("retry_in", type_=Float))
    due = {"dispatch_next_at": retry_at} if retry else {"dispatch_next_at": None, "dispatch_payload": None}
    return Query(
        update(jobs_table)
        .where(_c.id == bindparam("job_id"), _c.dispatch_lease == bindparam("lease"), _c.dispatch_status == "pending")
        .values({n: bindparam(n) for n in ("dispatch_status", "dispatch_attempts", "dispatch_error")})
        .values(dispatch_lease_until=None, **due)
        .returning(_c.id)
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


_READ_ADDED = _INSERT.reader("id", "dispatch_next_at")


class SqlJobUnitOfWork:
    """The job store's operations inside one transaction on one connection."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

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
        await execute(self._connection, delete(jobs_table).where(_c.id == job_id))

    async def claim_dispatches(self, lease_seconds: float, limit: int) -> list[PendingDispatch]:
        rows: Iterable[Sequence[Any]] = await execute(
            self._connection, _CLAIM.statement, {"limit": limit, "lease_seconds": lease_seconds}
        )
        return [PendingDispatch(*row) for row in rows]

    async def record_dispatch(self, entry: PendingDispatch, result: DispatchResult) -> bool:
        retry = result.status is DispatchStatus.pending
        params: dict[str, Any] = {"job_id": entry.job_id, "lease": entry.lease, "dispatch_status": result.status.value}
        params |= {"dispatch_attempts": result.attempts, "dispatch_error": result.error, "retry_in": result.retry_in or 0.0}
        statement = (_RECORD_RETRY if retry else _RECORD_DONE).statement
        return (await execute(self._connection, statement, params)).first() is not None


class SqlJobStore:
    """Jobs in the `jobs` table of `database` (which other stores may share)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[SqlJobUnitOfWork]:
        async with self._database.transaction() as connection:
            yield SqlJobUnitOfWork(connection)

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
        rows = await self._database.fetch(_INSERT, job_to_row(job) | outbox)
        if not rows:
            raise JobNameTaken(f"you already have a job named {job.job_name!r}")
        job_id, due = _READ_ADDED(rows[0])
        return msgspec.structs.replace(job, id=job_id, dispatch=DispatchState(next_attempt_at=due))

    async def replace_status(self, before: Job, after: Job) -> bool:
        params = {"job_id": after.id, "old_status": before.status.value, "new_status": after.status.value}
        for name in _STATUS_COLUMNS[1:]:
            params["old_" + name], params["new_" + name] = getattr(before, name), getattr(after, name)
        return bool(await self._database.fetch(_REPLACE_STATUS, params))

    async def stats(self) -> JobStats:
        by_status: dict[str, int] = {}
        backlog = 0
        async with self._database.transaction() as connection:
            statement = select(_c.status, _c.dispatch_status, func.count()).group_by(_c.status, _c.dispatch_status)
            rows: Iterable[Sequence[Any]] = await execute(connection, statement)
            for status, dispatch, count in rows:
                by_status[status] = by_status.get(status, 0) + count
                backlog += count if dispatch == DispatchStatus.pending.value else 0
        return JobStats(by_status=by_status, dispatch_backlog=backlog)

    async def start(self) -> None:
        await self._database.start()

    async def aclose(self) -> None:
        await self._database.aclose()
