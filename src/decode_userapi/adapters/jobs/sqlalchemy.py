"""The JobStore over SQLite or PostgreSQL, with SQLAlchemy Core; rows map to `Job` by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from sqlalchemy import JSON, Select, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from decode_userapi.adapters.sql import Database, execute, jobs_table, json_text
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
from decode_userapi.ports.jobs import JobStats, PendingDispatch

_c = jobs_table.c
# Every column but the outbox's bookkeeping, which only the dispatcher reads; in the order
# `job_from_row` unpacks them (by position: several times cheaper than by name).
_JOB_COLUMNS = (
    _c.id, _c.user_id, _c.user_email, _c.job_name, _c.environment, _c.priority,
    _c.application, _c.version, _c.entrypoint, _c.attributes, _c.hardware, _c.status,
    _c.date_created, _c.date_started, _c.date_finished, _c.runtime_details,
    _c.dispatch_status, _c.dispatch_attempts, _c.dispatch_error, _c.dispatch_next_at,
)


def job_to_row(job: Job) -> dict[str, Any]:
    """The `jobs` columns for `job`, except `id` and the dispatch columns (the outbox's own)."""
    return {
        "user_id": job.user_id,
        "user_email": job.user_email,
        "job_name": job.job_name,
        "environment": job.environment,
        "priority": job.priority,
        "application": job.application.application,
        "version": job.application.version,
        "entrypoint": job.application.entrypoint,
        "attributes": msgspec.to_builtins(job.attributes),
        "hardware": None if job.hardware is None else msgspec.to_builtins(job.hardware),
        "status": job.status.value,
        "date_created": job.date_created,
        "date_started": job.date_started,
        "date_finished": job.date_finished,
        "runtime_details": job.runtime_details,
    }


T = TypeVar("T")
_STATUSES = {s.value: s for s in JobStatus}  # a dict lookup is several times cheaper than JobStatus(v)
_DISPATCH_STATUSES = {s.value: s for s in DispatchStatus}
_STATUS_COLUMNS = ("status", "date_started", "date_finished", "runtime_details")


# `_JOB_COLUMNS` for `Database.fetch` on PostgreSQL; JSON columns as text, which msgspec decodes
# straight into their Structs (the driver's own JSON decoding would build dicts first).
_SELECT_JOBS = "SELECT " + ", ".join(
    f"{c.name}::text" if isinstance(c.type, JSON) else c.name for c in _JOB_COLUMNS
) + " FROM jobs"
_GET_SQL = f"{_SELECT_JOBS} WHERE id = $1"
_INSERT_COLUMNS = (
    "user_id", "user_email", "job_name", "environment", "priority", "application", "version", "entrypoint",
    "attributes", "hardware", "status", "date_created", "date_started", "date_finished", "runtime_details",
    "dispatch_status", "dispatch_attempts", "dispatch_next_at", "dispatch_payload",
)
_INSERT_SQL = (
    f"INSERT INTO jobs ({', '.join(_INSERT_COLUMNS)}) VALUES ("
    + ", ".join(f"${i}::text::json" if isinstance(_c[n].type, JSON) else f"${i}" for i, n in enumerate(_INSERT_COLUMNS, 1))
    + ") ON CONFLICT (user_id, job_name) DO NOTHING RETURNING id"
)
_REPLACE_STATUS_SQL = (  # compare and set: $1-$4 the new values, $5 the id, $6-$9 the expected ones
    "UPDATE jobs SET status = $1, date_started = $2, date_finished = $3, runtime_details = $4 "
    "WHERE id = $5 AND status = $6 AND date_started IS NOT DISTINCT FROM $7 "
    "AND date_finished IS NOT DISTINCT FROM $8 AND runtime_details IS NOT DISTINCT FROM $9 RETURNING id"
)
_LIST_SQL = f"{_SELECT_JOBS} WHERE user_id = $1 ORDER BY date_created DESC, id DESC OFFSET $2 LIMIT $3"


def _text_if_json(name: str, value: Any) -> Any:
    """A parameter for `_INSERT_SQL`: JSON columns are sent as text."""
    if value is None or not isinstance(_c[name].type, JSON):
        return value
    return json_text(value)


def _struct(value: Any, kind: type[T]) -> T:
    """A JSON column's value as `kind`: text (read with `Database.fetch`) or decoded by SQLAlchemy."""
    return msgspec.json.decode(value, type=kind) if isinstance(value, str) else msgspec.convert(value, kind)


def job_from_row(row: Sequence[Any]) -> Job:
    """A `Job` from a row of `_JOB_COLUMNS`. Runs once per listed job: kept lean on purpose."""
    (
        job_id, user_id, user_email, job_name, environment, priority,
        application, version, entrypoint, attributes, hardware, status,
        date_created, date_started, date_finished, runtime_details,
        dispatch_status, dispatch_attempts, dispatch_error, dispatch_next_at,
    ) = row
    return Job(
        id=job_id,
        user_id=user_id,
        user_email=user_email,
        job_name=job_name,
        environment=environment,
        priority=priority,
        application=ApplicationSpec(application, version, entrypoint),
        attributes=_struct(attributes, JobAttributes),
        hardware=None if hardware is None else _struct(hardware, HardwareSpec),
        status=_STATUSES[status],
        date_created=date_created,
        date_started=date_started,
        date_finished=date_finished,
        runtime_details=runtime_details,
        dispatch=DispatchState(_DISPATCH_STATUSES[dispatch_status], dispatch_attempts, dispatch_error, dispatch_next_at),
    )


def _get_statement(job_id: int) -> Select[Any]:
    return select(*_JOB_COLUMNS).where(_c.id == job_id)


def _list_statement(user_id: str, *, offset: int, limit: int) -> Select[Any]:
    """Served by the index (user_id, date_created DESC, id DESC)."""
    return (
        select(*_JOB_COLUMNS)
        .where(_c.user_id == user_id)
        .order_by(_c.date_created.desc(), _c.id.desc())
        .offset(offset)
        .limit(limit)
    )


class SqlJobUnitOfWork:
    """The job store's operations inside one transaction on one connection."""

    def __init__(self, database: Database, connection: AsyncConnection) -> None:
        self._database = database
        self._connection = connection

    async def add(self, job: Job) -> Job:
        statement = self._database.insert_or_ignore(jobs_table, job_to_row(job), "user_id", "job_name")
        job_id = (await execute(self._connection, statement.returning(jobs_table.c.id))).scalar_one_or_none()
        if job_id is None:
            raise JobNameTaken(f"you already have a job named {job.job_name!r}")
        return msgspec.structs.replace(job, id=job_id)

    async def get(self, job_id: int, *, for_update: bool = False) -> Job | None:
        statement = _get_statement(job_id)
        if for_update:
            statement = statement.with_for_update()  # PostgreSQL; SQLite locks the whole database anyway
        row = (await execute(self._connection, statement)).one_or_none()
        return None if row is None else job_from_row(row)

    async def list_for_user(self, user_id: str, *, offset: int, limit: int) -> list[Job]:
        statement = _list_statement(user_id, offset=offset, limit=limit)
        return [job_from_row(row) for row in await execute(self._connection, statement)]

    async def save(self, job: Job) -> None:
        if job.id is None:
            raise ValueError("save() takes a job read from the store; this one has no id")
        statement = update(jobs_table).where(jobs_table.c.id == job.id).values(**job_to_row(job))
        if (await execute(self._connection, statement)).rowcount == 0:
            raise NotFound(f"job {job.id} not found")

    async def delete(self, job_id: int) -> None:
        await execute(self._connection, delete(jobs_table).where(jobs_table.c.id == job_id))

    async def enqueue_dispatch(self, job_id: int, payload: dict[str, Any], now: datetime) -> None:
        statement = (
            update(jobs_table)
            .where(jobs_table.c.id == job_id)
            .values(
                dispatch_status=DispatchStatus.pending.value,
                dispatch_attempts=0,
                dispatch_error=None,
                dispatch_next_at=now,
                dispatch_lease_until=None,
                dispatch_payload=payload,
            )
        )
        await execute(self._connection, statement)

    async def claim_dispatches(self, now: datetime, lease_until: datetime, limit: int) -> list[PendingDispatch]:
        c = jobs_table.c
        due = (
            select(c.id)
            .where(
                c.dispatch_status == DispatchStatus.pending.value,
                c.dispatch_next_at <= now,
                or_(c.dispatch_lease_until.is_(None), c.dispatch_lease_until <= now),
            )
            .order_by(c.dispatch_next_at)
            .limit(limit)
            # Replicas skip the rows another one is claiming; SQLite has one writer at a time anyway.
            .with_for_update(skip_locked=True)
        )
        ids = list((await execute(self._connection, due)).scalars())
        if not ids:
            return []
        claim = (
            update(jobs_table)
            .where(c.id.in_(ids))
            .values(dispatch_lease_until=lease_until)
            .returning(c.id, c.dispatch_payload, c.dispatch_attempts, c.date_created)
        )
        rows = await execute(self._connection, claim)
        return [
            PendingDispatch(job_id=r.id, payload=r.dispatch_payload, attempts=r.dispatch_attempts, date_created=r.date_created)
            for r in rows
        ]

    async def record_dispatch(self, job_id: int, state: DispatchState) -> None:
        done = state.status is not DispatchStatus.pending
        values: dict[str, Any] = {
            "dispatch_status": state.status.value,
            "dispatch_attempts": state.attempts,
            "dispatch_error": state.last_error,
            "dispatch_next_at": state.next_attempt_at,
            "dispatch_lease_until": None,
        }
        if done:
            values["dispatch_payload"] = None  # delivered or failed: the payload is not needed again
        await execute(self._connection, update(jobs_table).where(jobs_table.c.id == job_id).values(**values))


class SqlJobStore:
    """Jobs in the `jobs` table of `database` (which other stores may share)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[SqlJobUnitOfWork]:
        async with self._database.transaction() as connection:
            yield SqlJobUnitOfWork(self._database, connection)

    async def get(self, job_id: int) -> Job | None:
        rows = await self._database.fetch(_GET_SQL, (job_id,), lambda: _get_statement(job_id))
        return job_from_row(rows[0]) if rows else None

    async def list_for_user(self, user_id: str, *, offset: int, limit: int) -> list[Job]:
        rows = await self._database.fetch(
            _LIST_SQL,
            (user_id, offset, limit),
            lambda: _list_statement(user_id, offset=offset, limit=limit),
        )
        return [job_from_row(row) for row in rows]

    async def add_with_dispatch(self, job: Job, payload: dict[str, Any]) -> Job:
        dispatch = DispatchState(next_attempt_at=job.date_created)
        values = {
            **job_to_row(job),
            "dispatch_status": dispatch.status.value,
            "dispatch_attempts": dispatch.attempts,
            "dispatch_next_at": dispatch.next_attempt_at,
            "dispatch_payload": payload,
        }
        rows = await self._database.fetch(  # one INSERT: atomic by itself
            _INSERT_SQL,
            [_text_if_json(name, values[name]) for name in _INSERT_COLUMNS],
            lambda: self._database.insert_or_ignore(jobs_table, values, "user_id", "job_name").returning(_c.id),
        )
        if not rows:
            raise JobNameTaken(f"you already have a job named {job.job_name!r}")
        return msgspec.structs.replace(job, id=rows[0][0], dispatch=dispatch)

    async def replace_status(self, before: Job, after: Job) -> bool:
        old, new = job_to_row(before), job_to_row(after)

        def statement() -> Any:
            return (
                update(jobs_table)
                .where(_c.id == after.id, *(_c[n].is_not_distinct_from(old[n]) for n in _STATUS_COLUMNS))
                .values({n: new[n] for n in _STATUS_COLUMNS})
                .returning(_c.id)
            )

        args = [*(new[n] for n in _STATUS_COLUMNS), after.id, *(old[n] for n in _STATUS_COLUMNS)]
        return bool(await self._database.fetch(_REPLACE_STATUS_SQL, args, statement))

    async def stats(self) -> JobStats:
        c = jobs_table.c
        async with self._database.transaction() as connection:
            counts = await execute(connection, select(c.status, func.count()).group_by(c.status))
            by_status = {row[0]: row[1] for row in counts}
            backlog = await execute(
                connection,
                select(func.count()).where(c.dispatch_status == DispatchStatus.pending.value),
            )
            return JobStats(by_status=by_status, dispatch_backlog=backlog.scalar_one())

    async def start(self) -> None:
        await self._database.start()

    async def aclose(self) -> None:
        await self._database.aclose()
