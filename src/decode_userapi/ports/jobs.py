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
    def unit_of_work(self) -> AbstractAsyncContextManager[JobUnitOfWork]: ...

    async def stats(self) -> JobStats:
        """Current counts (one short read; also proves the store answers)."""
        ...

    async def start(self) -> None:
        """Connect and make sure the schema exists."""
        ...

    async def aclose(self) -> None: ...
