from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from decode_userapi.domain.jobs import Job


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

    async def delete(self, job_id: int) -> None: ...


class JobStore(Protocol):
    def unit_of_work(self) -> AbstractAsyncContextManager[JobUnitOfWork]: ...

    async def start(self) -> None:
        """Connect and make sure the schema exists."""
        ...

    async def aclose(self) -> None: ...
