"""An in-memory JobStore: dict-backed, with the same behaviour as the SQL store; its clock is `clock`."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from decode_userapi.adapters.clock import SystemClock
from decode_userapi.domain.commands import ALL_JOBS, JobFilter
from decode_userapi.domain.errors import JobNameTaken, NotFound
from decode_userapi.domain.events import CREATED, DELETE, DISPATCH, STATUS, TRIMMABLE, EventNote, JobEvent
from decode_userapi.domain.jobs import DispatchState, DispatchStatus, Job, JobStatus
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


class _Pending(msgspec.Struct, frozen=True):
    """An event recorded in a unit of work, numbered when it commits."""

    job_id: int
    user_id: str
    note: EventNote


class InMemoryJobUnitOfWork:
    """Works on a private copy of the store's table; the store adopts it on commit."""

    def __init__(self, jobs: dict[int, Job], outbox: dict[int, _Outbox], clock: Clock) -> None:
        self.jobs = jobs
        self.outbox = outbox
        self.changed: set[str] = set()  # owners whose change counters the commit bumps
        self.events: list[_Pending] = []  # recorded on commit
        self.deleted: set[int] = set()  # jobs whose earlier events the commit forgets
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
            self.deleted.add(job_id)
            self.events = [e for e in self.events if e.job_id != job_id]
            await self.add_event(job_id, job.user_id, EventNote(DELETE))

    async def cancel_dispatch(self, job_id: int) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.dispatch.status is not DispatchStatus.pending:
            return False
        self.outbox.pop(job_id, None)
        state = msgspec.structs.replace(job.dispatch, status=DispatchStatus.canceled, next_attempt_at=None)
        self.jobs[job_id] = msgspec.structs.replace(job, dispatch=state)
        self.changed.add(job.user_id)
        return True

    async def add_event(self, job_id: int, user_id: str, note: EventNote) -> None:
        self.events.append(_Pending(job_id, user_id, note))

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
        await self.add_event(entry.job_id, self.jobs[entry.job_id].user_id, EventNote(DISPATCH, details=result.describe()))
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
    `get(..., for_update=True)` promises. Due and lease and event times come from `clock`.
    `on_change(user_id)` is called after a write that recorded events of the user (not ignored
    ones) has committed.
    """

    def __init__(self, clock: Clock | None = None, *, on_change: Callable[[str], None] | None = None) -> None:
        self._clock = clock or SystemClock()
        self._on_change = on_change
        self._jobs: dict[int, Job] = {}
        self._outbox: dict[int, _Outbox] = {}
        self._next_id = 1
        self._changes: dict[str, int] = {}
        self._events: list[tuple[str, JobEvent]] = []  # (owner, event), in id order
        self._next_event_id = 1
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[InMemoryJobUnitOfWork]:
        async with self._lock:
            uow = InMemoryJobUnitOfWork(dict(self._jobs), dict(self._outbox), self._clock)
            yield uow  # an exception here discards the working copy: rollback
            self._jobs, self._outbox = uow.jobs, uow.outbox
            if uow.deleted:
                self._events = [(u, e) for u, e in self._events if e.job_id not in uow.deleted]
            self._commit(uow.changed, uow.events)

    def _commit(self, changed: set[str], events: list[_Pending]) -> None:
        """Bump the counters of the users whose jobs changed or who have events that are not
        ignored (once each), then number the events: each takes its owner's counter."""
        told = {e.user_id for e in events if not e.note.ignored}
        for user_id in changed | told:
            self._changes[user_id] = self._changes.get(user_id, 0) + 1
        now = self._clock.now().astimezone(UTC)
        for pending in events:
            note = pending.note
            self._events.append((pending.user_id, JobEvent(
                id=self._next_event_id, seq=self._changes.get(pending.user_id, 0), job_id=pending.job_id, at=now,
                kind=note.kind, status=note.status, details=note.details, ignored=note.ignored,
            )))  # fmt: skip
            self._next_event_id += 1
        if self._on_change is not None:
            for user_id in told:
                self._on_change(user_id)

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
            self._commit({job.user_id}, [_Pending(stored.id, job.user_id, EventNote(CREATED, JobStatus.queued))])
            return copy.deepcopy(stored)

    async def replace_status(self, before: Job, after: Job, *, details: str | None = None) -> bool:
        async with self.unit_of_work() as uow:
            current = await uow.get(after.id)  # type: ignore[arg-type]
            if current is None or _status_fields(current) != _status_fields(_stored(before)):
                return False
            await uow.save(after)
            await uow.add_event(current.id, current.user_id, EventNote(STATUS, after.status, details))  # type: ignore[arg-type]
            return True

    async def add_event(self, job_id: int, user_id: str, note: EventNote) -> None:
        async with self._lock:
            self._commit(set(), [_Pending(job_id, user_id, note)])

    async def events_for_job(self, job_id: int, user_id: str, *, after: int = 0, limit: int) -> list[JobEvent]:
        async with self._lock:
            mine = [e for u, e in self._events if e.job_id == job_id and e.id > after and u == user_id]
            return mine[:limit]

    async def events_since(self, user_id: str, after_seq: int, limit: int) -> list[JobEvent]:
        async with self._lock:
            mine = [e for u, e in self._events if e.seq > after_seq and not e.ignored and u == user_id]
            return sorted(mine, key=lambda e: (e.seq, e.id))[:limit]

    async def prune_events(self, before: datetime, *, batch: int = 1000) -> int:
        async with self._lock:
            kept = [(u, e) for u, e in self._events if e.at >= before]
            pruned, self._events = len(self._events) - len(kept), kept
            return pruned

    async def trim_events(self, keep: int, *, after_id: int = 0) -> tuple[int, int]:
        async with self._lock:
            newest = self._events[-1][1].id if self._events else 0
            if newest <= after_id:
                return 0, after_id
            recent = {e.job_id for _, e in self._events if e.id > after_id}
            drop: set[int] = set()
            for job_id in recent:
                history = [e for _, e in self._events if e.job_id == job_id]
                if len(history) > keep:
                    first_kept = history[-keep].id
                    drop.update(e.id for e in history if e.id < first_kept and e.kind in TRIMMABLE)
            self._events = [(u, e) for u, e in self._events if e.id not in drop]
            return len(drop), newest

    async def stats(self) -> JobStats:
        by_status: dict[str, int] = {}
        for job in self._jobs.values():
            by_status[job.status.value] = by_status.get(job.status.value, 0) + 1
        pending = [job.date_created for job in self._jobs.values() if job.dispatch.status is DispatchStatus.pending]
        return JobStats(by_status=by_status, dispatch_backlog=len(pending), oldest_pending=min(pending, default=None))

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
