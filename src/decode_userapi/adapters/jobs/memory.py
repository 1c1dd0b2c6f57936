"""An in-memory JobStore: dict-backed, with the same behaviour as the SQL store; its clock is `clock`."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from decode_userapi.adapters.clock import SystemClock
from decode_userapi.domain.commands import ALL_JOBS, JobFilter
from decode_userapi.domain.errors import JobNameTaken, NotFound
from decode_userapi.domain.jobs import DispatchState, DispatchStatus, Job
from decode_userapi.ports.clock import Clock
from decode_userapi.ports.jobs import DispatchResult, JobsPage, JobStats, PendingDispatch


def _stored(job: Job) -> Job:
    """A private copy of `job`, with its datetimes in UTC as the SQL store returns them."""
    stored = copy.deepcopy(job)
    for field in ("date_created", "date_started", "date_finished"):
        value = getattr(stored, field)
        if value is not None:
            setattr(stored, field, value.astimezone(UTC))
    return stored


class _Outbox(msgspec.Struct, frozen=True):
    payload: dict[str, Any]
    lease: int = 0
    lease_until: datetime | None = None


class InMemoryJobUnitOfWork:
    """Works on a private copy of the store's table; the store adopts it on commit."""

    def __init__(self, jobs: dict[int, Job], outbox: dict[int, _Outbox], clock: Clock) -> None:
        self.jobs = jobs
        self.outbox = outbox
        self.changed: set[str] = set()  # owners whose change counters the commit bumps
        self._clock = clock

    async def get(self, job_id: int, *, for_update: bool = False) -> Job | None:
        job = self.jobs.get(job_id)
        return None if job is None else copy.deepcopy(job)

    async def save(self, job: Job) -> None:
        if job.id not in self.jobs:
            raise NotFound(f"job {job.id} not found")
        stored = _stored(job)
        stored.dispatch = self.jobs[job.id].dispatch  # owned by the dispatch methods, as in SQL
        self.jobs[job.id] = stored
        self.changed.add(stored.user_id)

    async def delete(self, job_id: int) -> None:
        job = self.jobs.pop(job_id, None)
        self.outbox.pop(job_id, None)
        if job is not None:
            self.changed.add(job.user_id)

    async def claim_dispatches(self, lease_seconds: float, limit: int) -> list[PendingDispatch]:
        now = self._clock.now()
        due = sorted(
            (job.dispatch.next_attempt_at, job_id)
            for job_id, entry in self.outbox.items()
            if (job := self.jobs[job_id]).dispatch.status is DispatchStatus.pending
            and job.dispatch.next_attempt_at is not None
            and job.dispatch.next_attempt_at <= now
            and (entry.lease_until is None or entry.lease_until <= now)
        )[:limit]
        claimed = []
        for _, job_id in due:
            entry = self.outbox[job_id] = msgspec.structs.replace(
                self.outbox[job_id], lease=self.outbox[job_id].lease + 1, lease_until=now + timedelta(seconds=lease_seconds)
            )
            job = self.jobs[job_id]
            claimed.append(PendingDispatch(job_id, entry.lease, copy.deepcopy(entry.payload), job.dispatch.attempts, job.date_created))
        return claimed

    async def record_dispatch(self, entry: PendingDispatch, result: DispatchResult) -> bool:
        held = self.outbox.get(entry.job_id)
        if held is None or held.lease != entry.lease:
            return False
        retry = result.status is DispatchStatus.pending
        next_at = self._clock.now() + timedelta(seconds=result.retry_in or 0.0) if retry else None
        state = DispatchState(result.status, result.attempts, result.error, next_at)
        # Stored jobs are shared with the committed table until commit: replace, never mutate.
        self.jobs[entry.job_id] = msgspec.structs.replace(self.jobs[entry.job_id], dispatch=state)
        self.changed.add(self.jobs[entry.job_id].user_id)
        if retry:
            self.outbox[entry.job_id] = msgspec.structs.replace(held, lease_until=None)
        else:
            del self.outbox[entry.job_id]
        return True


def _status_fields(job: Job) -> tuple[Any, ...]:
    return job.status, job.date_started, job.date_finished, job.runtime_details


class InMemoryJobStore:
    """Jobs in a dict; ids count from 1 and are never reused. Callers only ever hold copies.

    One unit of work runs at a time (a lock held for its whole duration), which is what
    `get(..., for_update=True)` promises. Due and lease times come from `clock`.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._jobs: dict[int, Job] = {}
        self._outbox: dict[int, _Outbox] = {}
        self._next_id = 1
        self._changes: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[InMemoryJobUnitOfWork]:
        async with self._lock:
            uow = InMemoryJobUnitOfWork(dict(self._jobs), dict(self._outbox), self._clock)
            yield uow  # an exception here discards the working copy: rollback
            self._jobs, self._outbox = uow.jobs, uow.outbox
            for user_id in uow.changed:
                self._changes[user_id] = self._changes.get(user_id, 0) + 1

    async def get(self, job_id: int) -> Job | None:
        async with self.unit_of_work() as uow:
            return await uow.get(job_id)

    async def get_with_changes(self, job_id: int, user_id: str) -> tuple[Job | None, int]:
        async with self._lock:
            job = self._jobs.get(job_id)
            return (None if job is None else copy.deepcopy(job)), self._changes.get(user_id, 0)

    async def list_for_user(
        self, user_id: str, *, offset: int, limit: int, filter: JobFilter = ALL_JOBS
    ) -> list[Job]:
        return (await self.page_for_user(user_id, offset=offset, limit=limit, filter=filter)).jobs

    async def page_for_user(self, user_id: str, *, offset: int, limit: int, filter: JobFilter = ALL_JOBS) -> JobsPage:
        async with self._lock:
            mine = sorted(
                (j for j in self._jobs.values() if j.user_id == user_id and filter.matches(j)),
                key=lambda j: (j.date_created, j.id),
                reverse=True,
            )
            jobs = [copy.deepcopy(j) for j in mine[offset : offset + limit]]
            return JobsPage(jobs=jobs, total=len(mine), changes=self._changes.get(user_id, 0))

    async def changes(self, user_id: str) -> int:
        return self._changes.get(user_id, 0)

    async def add_with_dispatch(self, job: Job, payload: dict[str, Any]) -> Job:
        async with self._lock:
            if any(j.user_id == job.user_id and j.job_name == job.job_name for j in self._jobs.values()):
                raise JobNameTaken(f"you already have a job named {job.job_name!r}")
            stored = _stored(job)
            stored.id, self._next_id = self._next_id, self._next_id + 1
            stored.dispatch = DispatchState(next_attempt_at=self._clock.now())
            self._jobs[stored.id] = stored
            self._outbox[stored.id] = _Outbox(copy.deepcopy(payload))
            self._changes[job.user_id] = self._changes.get(job.user_id, 0) + 1
            return copy.deepcopy(stored)

    async def replace_status(self, before: Job, after: Job) -> bool:
        async with self.unit_of_work() as uow:
            current = await uow.get(after.id)  # type: ignore[arg-type]
            if current is None or _status_fields(current) != _status_fields(_stored(before)):
                return False
            await uow.save(after)
            return True

    async def stats(self) -> JobStats:
        by_status: dict[str, int] = {}
        for job in self._jobs.values():
            by_status[job.status.value] = by_status.get(job.status.value, 0) + 1
        backlog = sum(1 for job in self._jobs.values() if job.dispatch.status is DispatchStatus.pending)
        return JobStats(by_status=by_status, dispatch_backlog=backlog)

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
