"""The JobStore over SQLite or PostgreSQL, with SQLAlchemy Core; rows map to `Job` by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Row, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from decode_userapi.adapters.sql import Database, execute, jobs_table
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


def _job_columns() -> list[Any]:
    """Every column but the outbox payload, which only the dispatcher reads."""
    return [c for c in jobs_table.c if c.name != "dispatch_payload"]


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


def job_from_row(row: Row[Any]) -> Job:
    return Job(
        id=row.id,
        user_id=row.user_id,
        user_email=row.user_email,
        job_name=row.job_name,
        environment=row.environment,
        priority=row.priority,
        application=ApplicationSpec(application=row.application, version=row.version, entrypoint=row.entrypoint),
        attributes=msgspec.convert(row.attributes, JobAttributes),
        hardware=None if row.hardware is None else msgspec.convert(row.hardware, HardwareSpec),
        status=JobStatus(row.status),
        date_created=row.date_created,
        date_started=row.date_started,
        date_finished=row.date_finished,
        runtime_details=row.runtime_details,
        dispatch=DispatchState(
            status=DispatchStatus(row.dispatch_status),
            attempts=row.dispatch_attempts,
            last_error=row.dispatch_error,
            next_attempt_at=row.dispatch_next_at,
        ),
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
        statement = select(*_job_columns()).where(jobs_table.c.id == job_id)
        if for_update:
            statement = statement.with_for_update()  # PostgreSQL; SQLite locks the whole database anyway
        row = (await execute(self._connection, statement)).one_or_none()
        return None if row is None else job_from_row(row)

    async def list_for_user(self, user_id: str, *, offset: int, limit: int) -> list[Job]:
        statement = (
            select(*_job_columns())
            .where(jobs_table.c.user_id == user_id)
            .order_by(jobs_table.c.date_created.desc(), jobs_table.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
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
