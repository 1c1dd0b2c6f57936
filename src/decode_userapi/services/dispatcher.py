"""Delivers recorded jobs to the worker-facing API: the transactional outbox's sender.

`POST /jobs` records a job and its payload in one statement and returns; this sender, running inside
every replica, claims due entries, posts them, and records each outcome on its own. A claim leases
an entry under a fencing token: no other replica sends it meanwhile, and a replica whose lease ran
out (stalled past it) cannot overwrite the record of the one that claimed it next. Lease and due
times are the store's clock, so replicas whose clocks disagree still agree on them.

Only a refusal of the payload itself (400/409/422) fails a job at once. Every other failure (a wrong
key, a wrong URL, a server fault, no answer) is retried with capped, jittered backoff until
`RetryPolicy.give_up_after`, and made loud: one ERROR line per kind of fault when it starts (and
every `FAULT_LOG_INTERVAL` while it lasts), counts by kind for /metrics, and /ready says
`misconfigured` while the API refuses our key. Delivery is at least once: a replica killed mid-send
leaves a lease that runs out, and the entry is sent again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime

import msgspec
import structlog

from decode_userapi.domain.dispatch import RetryPolicy, with_job_id
from decode_userapi.domain.errors import DomainError, WorkerRejected, WorkerUnavailable
from decode_userapi.domain.events import STATUS, EventNote
from decode_userapi.domain.jobs import DispatchStatus, JobStatus, apply_status_update, end_of_job_email
from decode_userapi.ports.clock import Clock
from decode_userapi.ports.email import EmailSender
from decode_userapi.ports.jobs import DispatchResult, JobStore, PendingDispatch
from decode_userapi.ports.workers import MISCONFIGURED_KINDS, WorkerDispatch

log = structlog.get_logger(__name__)
MAX_ERROR = 500
FAULT_LOG_INTERVAL = 300.0  # seconds between ERROR lines for a fault that persists


class DispatchHealth(msgspec.Struct, frozen=True):
    """What this replica's sender knows of the worker-facing API."""

    fault: str | None  # the kind of the last failed attempt, None once an attempt succeeded
    detail: str | None
    failures: dict[str, int]  # failed attempts by kind since start
    # When the attempts started failing (the first failure after a success, by the clock), None
    # while they succeed: an API that answers pings but takes no job shows here.
    failing_since: datetime | None = None

    @property
    def misconfigured(self) -> bool:
        return self.fault in MISCONFIGURED_KINDS


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
        attempt_timeout: float = 30.0,
        batch: int = 16,
        run_in_background: bool = True,
    ) -> None:
        if not 0 < attempt_timeout < lease:
            raise ValueError(
                f"an attempt's deadline ({attempt_timeout} s) must be shorter than the lease ({lease} s),"
                " or another replica may send the job again while the first attempt is still under way"
            )
        self._store = store
        self._workers = workers
        self._clock = clock
        self._email = email
        self._policy = policy or RetryPolicy()
        self._poll = poll_interval
        self._lease = lease
        self._attempt_timeout = attempt_timeout
        self._batch = batch
        self._background = run_in_background
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._fault: str | None = None
        self._fault_detail: str | None = None
        self._fault_logged: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._failing_since: datetime | None = None

    async def start(self) -> None:
        if self._background and self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="decode-userapi-dispatcher")

    def wake(self) -> None:
        """A new entry is due: look now rather than at the next poll."""
        self._wake.set()

    def health(self) -> DispatchHealth:
        return DispatchHealth(self._fault, self._fault_detail, dict(self._failures), self._failing_since)

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
            except Exception:
                log.exception("dispatch.loop_crashed")
                sent = 0
            if sent == 0 and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def run_once(self) -> int:
        """Claim the due entries and deliver them, each recorded on its own; return how many were claimed."""
        async with self._store.unit_of_work() as uow:
            claimed = await uow.claim_dispatches(self._lease, self._batch)
        await asyncio.gather(*(self._deliver(entry) for entry in claimed))
        return len(claimed)

    async def _deliver(self, entry: PendingDispatch) -> None:
        """One attempt, within one deadline, then its outcome. Never raises: should the bookkeeping
        fail, this entry's lease runs out and it alone is sent again."""
        attempts = entry.attempts + 1
        try:
            try:
                async with asyncio.timeout(self._attempt_timeout):
                    await self._workers.submit(with_job_id(entry.payload, entry.job_id, entry.date_created))
            except TimeoutError:
                error: DomainError = WorkerUnavailable(
                    f"the worker-facing API did not take the job within {self._attempt_timeout:g} s", kind="timeout"
                )
            except DomainError as e:
                error = e
            else:
                self._answered()
                if await self._record(entry, DispatchResult(DispatchStatus.sent, attempts)):
                    log.info("dispatch.sent", job_id=entry.job_id, attempts=attempts)
                return
            await self._failed_attempt(entry, attempts, error)
        except Exception:
            log.exception("dispatch.record_failed", job_id=entry.job_id, attempts=attempts)

    async def _record(self, entry: PendingDispatch, result: DispatchResult) -> bool:
        async with self._store.unit_of_work() as uow:
            recorded = await uow.record_dispatch(entry, result)
        if not recorded:
            log.warning("dispatch.lease_lost", job_id=entry.job_id, lease=entry.lease, outcome=result.status.value)
        return recorded

    async def _failed_attempt(self, entry: PendingDispatch, attempts: int, error: DomainError) -> None:
        kind = error.kind if isinstance(error, WorkerUnavailable) else "unexpected"
        detail = error.detail[:MAX_ERROR]
        self._count(kind, detail, rejected=isinstance(error, WorkerRejected))
        now = self._clock.now()
        if not isinstance(error, WorkerRejected) and not self._policy.gives_up(entry.date_created, now):
            retry_after = error.retry_after if isinstance(error, WorkerUnavailable) else None
            delay = self._policy.delay(attempts, random.random(), retry_after)
            result = DispatchResult(DispatchStatus.pending, attempts, detail, retry_in=delay)
            if await self._record(entry, result):
                log.warning("dispatch.retry", job_id=entry.job_id, attempts=attempts, kind=kind, error=detail, delay=round(delay, 3))
            return
        async with self._store.unit_of_work() as uow:
            if not await uow.record_dispatch(entry, DispatchResult(DispatchStatus.failed, attempts, detail)):
                log.warning("dispatch.lease_lost", job_id=entry.job_id, lease=entry.lease, outcome="failed")
                return
            job = await uow.get(entry.job_id, for_update=True)
            outcome = None
            if job is not None:
                reason = f"the job could not be handed to a worker: {detail}"
                outcome = apply_status_update(job, JobStatus.error, reason, now)
                if outcome.applied:
                    await uow.save(job)
                    await uow.add_event(entry.job_id, job.user_id, EventNote(STATUS, JobStatus.error, reason))
        log.error("dispatch.failed", job_id=entry.job_id, attempts=attempts, kind=kind, error=detail)
        if job is not None and outcome is not None and outcome.entered_terminal and job.user_email:
            await self._email.send(job.user_email, *end_of_job_email(job))

    def _count(self, kind: str, detail: str, *, rejected: bool) -> None:
        """Count the failure; an ERROR line when a kind of fault of the API starts, and then at most
        every `FAULT_LOG_INTERVAL` while it lasts (a refused payload is the job's, not the API's)."""
        self._failures[kind] = self._failures.get(kind, 0) + 1
        if rejected:
            return
        if self._failing_since is None:
            self._failing_since = self._clock.now()
        now = time.monotonic()
        changed = kind != self._fault
        self._fault, self._fault_detail = kind, detail
        if changed or now - self._fault_logged.get(kind, -FAULT_LOG_INTERVAL) >= FAULT_LOG_INTERVAL:
            self._fault_logged[kind] = now
            log.error(
                "dispatch.workerfacing_api_fault",
                kind=kind,
                error=detail,
                misconfigured=kind in MISCONFIGURED_KINDS,
                failures=self._failures[kind],
                note="jobs stay queued and are retried; fix the cause and they are delivered",
            )

    def _answered(self) -> None:
        if self._fault is not None:
            log.info("dispatch.workerfacing_api_recovered", after=self._fault)
            self._fault = self._fault_detail = None
            self._fault_logged.clear()
        self._failing_since = None
