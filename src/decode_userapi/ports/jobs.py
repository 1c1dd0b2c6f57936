from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

import msgspec

from decode_userapi.domain.commands import ALL_JOBS, JobFilter
from decode_userapi.domain.events import EventNote, JobEvent
from decode_userapi.domain.jobs import DispatchStatus, Job


class PendingDispatch(msgspec.Struct, frozen=True):
    """A job's hand-over to the worker-facing API, claimed for one delivery attempt under `lease`,
    the fencing token only this claim holds."""

    job_id: int
    lease: int
    payload: dict[str, Any]
    attempts: int
    date_created: datetime


class DispatchResult(msgspec.Struct, frozen=True):
    """The outcome of one attempt: `attempts` counts it, `error` is its own (None once sent); a
    `pending` result is tried again `retry_in` seconds from now, by the store's clock."""

    status: DispatchStatus
    attempts: int
    error: str | None = None
    retry_in: float | None = None

    def describe(self) -> str:
        """The attempt as its `dispatch` event's details say it."""
        if self.status is DispatchStatus.sent:
            return f"sent (attempt {self.attempts})"
        if self.status is DispatchStatus.pending:
            return f"attempt {self.attempts} failed, retrying in {self.retry_in or 0:.3g} s: {self.error}"
        return f"{self.status.value} after {self.attempts} attempt(s): {self.error}"


class JobUnitOfWork(Protocol):
    """One transaction over the job store: committed when the block exits normally, else rolled back."""

    async def get(self, job_id: int, *, for_update: bool = False) -> Job | None:
        """The job, or None. `for_update` locks it until the unit of work ends."""
        ...

    async def save(self, job: Job) -> None:
        """Write back a job read in this unit of work (not its dispatch state)."""
        ...

    async def delete(self, job_id: int) -> None:
        """Forget the job, and with it any dispatch not yet delivered and its events, but for one
        `delete` event recorded now (what the live stream tells the owner)."""
        ...

    async def cancel_dispatch(self, job_id: int) -> bool:
        """Drop the job's dispatch if still pending (its status becomes `canceled`, and a sender
        holding a lease on it can no longer record an outcome); True if there was one to drop."""
        ...

    async def add_event(self, job_id: int, user_id: str, note: EventNote) -> None:
        """Record an event of the job, in this unit of work."""
        ...

    async def claim_dispatches(self, lease_seconds: float, limit: int) -> list[PendingDispatch]:
        """Due, unleased pending dispatches, each leased for `lease_seconds` under a new token so no
        other replica sends it meanwhile (a crashed sender's lease simply runs out: at-least-once
        delivery). Due and lease times are the store's clock, shared by every replica."""
        ...

    async def record_dispatch(self, entry: PendingDispatch, result: DispatchResult) -> bool:
        """The outcome of an attempt on `entry`, and its `dispatch` event; releases the lease. False,
        recording nothing, if the entry was claimed again since (its lease ran out), is no longer
        pending (canceled), or the job is gone."""
        ...


class JobsPage(msgspec.Struct, frozen=True):
    """A page of a user's jobs, how many the filter matches in all, and the user's change counter."""

    jobs: list[Job]
    total: int
    changes: int


class JobStats(msgspec.Struct, frozen=True):
    """Counts for operators: jobs by status, and deliveries not yet made."""

    by_status: dict[str, int]
    dispatch_backlog: int
    oldest_pending: datetime | None = None  # when the oldest job not yet delivered was created


class JobStore(Protocol):
    """Jobs. The hot paths are single statements outside any unit of work (no BEGIN/COMMIT round
    trips); a read-modify-write that must lock uses `unit_of_work()`."""

    def unit_of_work(self) -> AbstractAsyncContextManager[JobUnitOfWork]: ...

    async def get(self, job_id: int) -> Job | None:
        """The job, or None: one read."""
        ...

    async def list_for_user(self, user_id: str, *, offset: int, limit: int, filter: JobFilter = ALL_JOBS) -> list[Job]:
        """The user's jobs that `filter` matches (`JobFilter.matches`; default all), newest first,
        then paged: one read."""
        ...

    async def get_with_changes(self, job_id: int, user_id: str) -> tuple[Job | None, int]:
        """The job (or None) and `user_id`'s change counter, read together: one read."""
        ...

    async def page_for_user(self, user_id: str, *, offset: int, limit: int, filter: JobFilter = ALL_JOBS) -> JobsPage:
        """`list_for_user`, with how many jobs `filter` matches in all and the user's change counter
        (`changes`), read together: one read (two when the page is empty)."""
        ...

    async def changes(self, user_id: str) -> int:
        """The user's change counter: it grows with every write of one of their jobs that changes what
        the user sees of it (created, status, dispatch state, deleted), and with every event that
        is not ignored, in the same transaction as the write, and with nothing else (a claim's
        lease, a read, an ignored event). 0 for a user never written. One
        cheap read, the same on every replica."""
        ...

    async def add_with_dispatch(self, job: Job, payload: dict[str, Any]) -> Job:
        """Record a new job, its outbox entry (due now, by the store's clock) and its `created` event
        in one atomic step (one statement on PostgreSQL), and return the job with its id. The payload
        does not hold the id yet: the sender adds it (`domain.dispatch.with_job_id`). `JobNameTaken`
        if the owner has a job of that name."""
        ...

    async def replace_status(self, before: Job, after: Job, *, details: str | None = None) -> bool:
        """Compare and set: write `after`'s status, dates and runtime details if the stored job still
        has `before`'s, with a `status` event of `after.status` and the `details` received (one
        statement on PostgreSQL). False, recording nothing, if another update changed them first,
        or the job is gone."""
        ...

    async def add_event(self, job_id: int, user_id: str, note: EventNote) -> None:
        """Record one event by itself (an ignored update: it changes no job, nor the counter)."""
        ...

    async def events_for_job(self, job_id: int, user_id: str, *, after: int = 0, limit: int) -> list[JobEvent]:
        """The events of `user_id`'s job `job_id` with `id > after`, oldest first, at most `limit`:
        one read. Empty for a job that is not the user's."""
        ...

    async def events_since(self, user_id: str, after_seq: int, limit: int) -> list[JobEvent]:
        """The user's events that are not ignored with `seq > after_seq`, in (seq, id) order, at
        most `limit`: what the live stream sends, and resumes from. One read."""
        ...

    async def prune_events(self, before: datetime, *, batch: int = 1000) -> int:
        """Forget the events recorded before `before`, whatever their job (the `delete` event a
        deleted job leaves, an orphan, a live job's old history), oldest first, `batch` at a time
        each in a transaction of its own; how many. Safe to run on several replicas at once."""
        ...

    async def trim_events(self, keep: int, *, after_id: int = 0) -> tuple[int, int]:
        """Bound each job's history: of the jobs with an event whose id is above `after_id`, those
        with more than `keep` events lose their `status` and `dispatch` events older than their
        newest `keep` (`created`, `cancel`, `delete` stay). How many went, and the newest event id
        looked at (the next call's `after_id`: only jobs with new events are looked at again)."""
        ...

    async def stats(self) -> JobStats:
        """Current counts (one short read; also proves the store answers)."""
        ...

    async def start(self) -> None:
        """Connect and make sure the schema exists."""
        ...

    async def aclose(self) -> None: ...
