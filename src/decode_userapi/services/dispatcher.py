"""Delivers recorded jobs to the worker-facing API: the transactional outbox's sender.

`POST /jobs` records a job and its payload in one transaction and returns; this sender, running
inside every replica, claims due entries (leased, so replicas never send the same one at once),
posts them, and records the outcome. Transient faults are retried with capped exponential
backoff and jitter; a refusal for good, or no success within the retry window, fails the dispatch
and puts the job in `error`, so nothing silently never runs. Delivery is at least once: a replica
killed mid-send leaves a lease that runs out, and the entry is sent again with the same
idempotency key.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import structlog

from decode_userapi.domain.dispatch import RetryPolicy, with_job_id
from decode_userapi.domain.errors import DomainError, WorkerRejected
from decode_userapi.domain.jobs import (
    DispatchState,
    DispatchStatus,
    JobStatus,
    apply_status_update,
    end_of_job_email,
)
from decode_userapi.ports.clock import Clock
from decode_userapi.ports.email import EmailSender
from decode_userapi.ports.jobs import JobStore, PendingDispatch
from decode_userapi.ports.workers import WorkerDispatch

log = structlog.get_logger(__name__)
MAX_ERROR = 500


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        workers: WorkerDispatch,
        clock: Clock,
        email: EmailSender,
        *,
        policy: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        lease: float = 120.0,
        batch: int = 16,
        run_in_background: bool = True,
    ) -> None:
        self._store = store
        self._workers = workers
        self._clock = clock
        self._email = email
        self._policy = policy or RetryPolicy()
        self._poll = poll_interval
        self._lease = lease
        self._batch = batch
        self._background = run_in_background
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._background and self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="decode-userapi-dispatcher")

    def wake(self) -> None:
        """A new entry is due: look now rather than at the next poll."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop after the deliveries under way; what is left stays pending for the next start."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def _run(self) -> None:
        while not self._stopping:
            try:
                sent = await self.run_once()
            except DomainError as e:  # the database is down: keep polling, it will come back
                log.warning("dispatch.loop_error", error=e.detail)
                sent = 0
            except Exception:  # the sender must outlive any single bug (logged with its traceback)
                log.exception("dispatch.loop_crashed")
                sent = 0
            if sent == 0 and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def run_once(self) -> int:
        """Claim the due entries and deliver them; return how many were claimed."""
        now = self._clock.now()
        async with self._store.unit_of_work() as uow:
            claimed = await uow.claim_dispatches(now, now + timedelta(seconds=self._lease), self._batch)
        if claimed:
            delivered = await asyncio.gather(*(self._deliver(entry) for entry in claimed))
            await self._record_sent([entry for entry, ok in zip(claimed, delivered, strict=True) if ok])
        return len(claimed)

    async def _deliver(self, entry: PendingDispatch) -> bool:
        """Send one entry; a failed attempt is recorded here, a success by `_record_sent`."""
        try:
            await self._workers.submit(with_job_id(entry.payload, entry.job_id, entry.date_created))
        except DomainError as e:
            await self._failed_attempt(entry, entry.attempts + 1, e)
            return False
        return True

    async def _record_sent(self, entries: list[PendingDispatch]) -> None:
        """The batch's successes in one transaction, not one each: under load that saves two round
        trips per job. Should it fail, the leases run out and the entries are sent again, with the
        same idempotency keys (delivery is at least once anyway)."""
        if not entries:
            return
        async with self._store.unit_of_work() as uow:
            for entry in entries:
                await uow.record_dispatch(entry.job_id, DispatchState(DispatchStatus.sent, entry.attempts + 1))
        for entry in entries:
            log.info("dispatch.sent", job_id=entry.job_id, attempts=entry.attempts + 1)

    async def _failed_attempt(self, entry: PendingDispatch, attempts: int, error: DomainError) -> None:
        now = self._clock.now()
        detail = error.detail[:MAX_ERROR]
        final = isinstance(error, WorkerRejected) or self._policy.gives_up(entry.date_created, now)
        if not final:
            retry_at = self._policy.next_attempt(attempts, now, random.random())
            async with self._store.unit_of_work() as uow:
                await uow.record_dispatch(
                    entry.job_id, DispatchState(DispatchStatus.pending, attempts, detail, retry_at)
                )
            log.warning("dispatch.retry", job_id=entry.job_id, attempts=attempts, error=detail, retry_at=retry_at)
            return
        async with self._store.unit_of_work() as uow:
            await uow.record_dispatch(entry.job_id, DispatchState(DispatchStatus.failed, attempts, detail))
            job = await uow.get(entry.job_id, for_update=True)
            outcome = None
            if job is not None:
                message = f"the job could not be handed to a worker: {detail}"
                outcome = apply_status_update(job, JobStatus.error, message, now)
                if outcome.applied:
                    await uow.save(job)
        log.error("dispatch.failed", job_id=entry.job_id, attempts=attempts, error=detail)
        if job is not None and outcome is not None and outcome.entered_terminal and job.user_email:
            await self._email.send(job.user_email, *end_of_job_email(job))
