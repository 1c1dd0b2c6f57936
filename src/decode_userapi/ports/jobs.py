from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

import msgspec

from decode_userapi.domain.jobs import DispatchState, Job


class PendingDispatch(msgspec.Struct, frozen=True):
    """A job's hand-over to the worker-facing API, claimed for one delivery attempt."""

    job_id: int
    payload: dict[str, Any]
    attempts: int
    date_created: datetime


class JobUnitOfWork(Protocol):
    """One transaction over the job store: committed when the block exits normally, else rolled back."""

    async def add(self, job: Job) -> Job:
        """Record a new job and return it with its id. `JobNameTaken` if the owner has that name."""
        ...

    async def get(self, job_id: int, *, for_update: bool = False) -> Job | None:
        """The job, or None. `for_update` locks it until the unit of work ends."""
        ...

    async def list_for_user(self, user_id: str, *, offset: int, limit: int) -> list[Job]:
        """The user's jobs, newest first, then paged."""
        ...

    async def save(self, job: Job) -> None:
        """Write back a job read in this unit of work."""
        ...

    async def delete(self, job_id: int) -> None:
        """Forget the job, and with it any dispatch not yet delivered."""
        ...

    async def enqueue_dispatch(self, job_id: int, payload: dict[str, Any], now: datetime) -> None:
        """Record the job's payload for delivery (the outbox entry), due now."""
        ...

    async def claim_dispatches(self, now: datetime, lease_until: datetime, limit: int) -> list[PendingDispatch]:
        """Due, unclaimed pending dispatches, each leased until `lease_until` so no other replica
        sends it meanwhile (a crashed sender's lease simply runs out: at-least-once delivery)."""
        ...

    async def record_dispatch(self, job_id: int, state: DispatchState) -> None:
        """The outcome of an attempt; releases the lease. Nothing if the job was deleted meanwhile."""
        ...


class JobStats(msgspec.Struct, frozen=True):
    """Counts for operators: jobs by status, and deliveries not yet made."""

    by_status: dict[str, int]
    dispatch_backlog: int


class JobStore(Protocol):
    """Jobs. The hot paths are single statements outside any unit of work (no BEGIN/COMMIT round
    trips); a read-modify-write that must lock uses `unit_of_work()`."""

    def unit_of_work(self) -> AbstractAsyncContextManager[JobUnitOfWork]: ...

    async def get(self, job_id: int) -> Job | None:
        """The job, or None: one read."""
        ...

    async def list_for_user(self, user_id: str, *, offset: int, limit: int) -> list[Job]:
        """The user's jobs, newest first, then paged: one read."""
        ...

    async def add_with_dispatch(self, job: Job, payload: dict[str, Any]) -> Job:
        """Record a new job and its outbox entry (due at the job's `date_created`) in one atomic step,
        and return the job with its id. The payload does not hold the id yet: the sender adds it
        (`domain.dispatch.with_job_id`). `JobNameTaken` if the owner has a job of that name."""
        ...

    async def replace_status(self, before: Job, after: Job) -> bool:
        """Compare and set: write `after`'s status, dates and runtime details if the stored job still
        has `before`'s. False if another update changed them first, or the job is gone."""
        ...

    async def stats(self) -> JobStats:
        """Current counts (one short read; also proves the store answers)."""
        ...

    async def start(self) -> None:
        """Connect and make sure the schema exists."""
        ...

    async def aclose(self) -> None: ...
