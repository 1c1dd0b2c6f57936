"""The dispatcher on in-memory adapters: which failures fail a job, how loud the others are, and
what the job's dispatch state says after each attempt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from structlog.testing import capture_logs

from decode_userapi.adapters.jobs.memory import InMemoryJobStore
from decode_userapi.adapters.workers.memory import InMemoryWorkerDispatch
from decode_userapi.domain.backoff import backoff_delay
from decode_userapi.domain.errors import WorkerRejected, WorkerUnavailable
from decode_userapi.domain.jobs import DispatchStatus, JobStatus
from decode_userapi.services.dispatcher import Dispatcher
from decode_userapi.services.ops import OpsService
from tests.unit import test_job_service
from tests.unit.test_job_service import ALICE, create, put

services = test_job_service.services  # the fixture

pytestmark = pytest.mark.usefixtures("services")


async def submit(services: Any, name: str = "run") -> int:
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    return (await services.jobs().create(ALICE, create(name))).id


class Refusing(InMemoryWorkerDispatch):
    async def submit(self, payload: dict[str, Any]) -> None:
        raise WorkerRejected("the worker-facing API refused the job (HTTP 422): bad")


class AnswersPingsTakesNoJob(InMemoryWorkerDispatch):
    taking = False

    async def submit(self, payload: dict[str, Any]) -> None:
        if not self.taking:
            raise WorkerUnavailable("the worker-facing API did not take the job within 10 s", kind="timeout")
        await super().submit(payload)


class Slow(InMemoryWorkerDispatch):
    async def submit(self, payload: dict[str, Any]) -> None:
        await asyncio.sleep(10)


async def test_last_error_is_the_last_counted_attempts_own(services):
    job_id = await submit(services)
    workers, clock, dispatcher = services.adapters.worker_dispatch(), services.adapters.clock(), services.dispatcher()
    workers.fail, workers.fail_kind = True, "server_error"
    await dispatcher.run_once()
    first = (await services.jobs().get(ALICE, job_id)).dispatch
    assert (first.attempts, first.status) == (1, DispatchStatus.pending) and "unavailable" in first.last_error
    workers.fail_kind = "unauthorized"
    clock.advance(600)
    await dispatcher.run_once()
    second = (await services.jobs().get(ALICE, job_id)).dispatch
    assert second.attempts == 2 and second.last_error == first.last_error  # the same message, counted again
    workers.fail = False
    clock.advance(600)
    await dispatcher.run_once()
    view = await services.jobs().get(ALICE, job_id)
    assert (view.dispatch.status, view.dispatch.attempts, view.dispatch.last_error) == (DispatchStatus.sent, 3, None)
    assert view.status is JobStatus.queued


@pytest.mark.parametrize("kind", ["unauthorized", "endpoint", "server_error", "timeout", "connection"])
async def test_faults_of_the_api_never_fail_a_job_and_are_said_once(services, kind):
    ids = [await submit(services, f"run{i}") for i in range(5)]
    workers, clock, dispatcher = services.adapters.worker_dispatch(), services.adapters.clock(), services.dispatcher()
    workers.fail, workers.fail_kind = True, kind
    with capture_logs() as logs:
        for _ in range(4):
            await dispatcher.run_once()
            clock.advance(600)
        health = dispatcher.health()
        readiness = await services.ops().readiness()
        workers.fail = False
        await dispatcher.run_once()
    assert health.fault == kind and health.failures == {kind: 20}
    assert health.misconfigured is (kind in ("unauthorized", "endpoint"))
    assert readiness.ready and readiness.checks["workerfacing_api"].startswith(
        "misconfigured" if health.misconfigured else "unreachable"
    )
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["kind"]) for e in errors] == [("dispatch.workerfacing_api_fault", kind)]
    assert [e["event"] for e in logs if e["event"] == "dispatch.workerfacing_api_recovered"] == [
        "dispatch.workerfacing_api_recovered"
    ]
    for job_id in ids:
        view = await services.jobs().get(ALICE, job_id)
        assert view.status is JobStatus.queued and view.dispatch.status is DispatchStatus.sent
    assert dispatcher.health().fault is None and (await services.ops().readiness()).checks["workerfacing_api"] == "ok"


async def test_a_refused_payload_fails_the_job_at_once(services):
    job_id = await submit(services)
    store, clock = services.adapters.job_store(), services.adapters.clock()
    dispatcher = Dispatcher(store, Refusing(), clock, services.adapters.email_sender(), run_in_background=False)
    await dispatcher.run_once()
    view = await services.jobs().get(ALICE, job_id)
    assert view.status is JobStatus.error and view.dispatch.status is DispatchStatus.failed
    assert view.dispatch.attempts == 1 and "HTTP 422" in view.dispatch.last_error
    assert dispatcher.health().fault is None and dispatcher.health().failures == {"rejected": 1}


async def test_an_attempt_has_one_deadline(services):
    job_id = await submit(services)
    store, clock = services.adapters.job_store(), services.adapters.clock()
    dispatcher = Dispatcher(
        store, Slow(), clock, services.adapters.email_sender(), attempt_timeout=0.05, lease=1, run_in_background=False
    )
    await asyncio.wait_for(dispatcher.run_once(), 2)
    view = await services.jobs().get(ALICE, job_id)
    assert view.dispatch.status is DispatchStatus.pending and "within 0.05 s" in view.dispatch.last_error
    assert dispatcher.health().fault == "timeout"


@pytest.mark.parametrize(("timeout", "lease"), [(60, 60), (61, 60), (0, 60)])
def test_the_deadline_must_be_shorter_than_the_lease(timeout, lease):
    with pytest.raises(ValueError, match="shorter than the lease"):
        Dispatcher(InMemoryJobStore(), InMemoryWorkerDispatch(), None, None, attempt_timeout=timeout, lease=lease)  # type: ignore[arg-type]


def test_backoff_doubles_is_capped_jittered_and_honours_retry_after():
    assert [backoff_delay(n, 0.999999, base=1, cap=300) for n in (1, 2, 3)] == pytest.approx([1, 2, 4], rel=1e-5)
    assert [backoff_delay(n, 0.0, base=1, cap=300) for n in (1, 2, 3)] == [0.5, 1, 2]
    assert backoff_delay(40, 0.5, base=1, cap=300) == 225  # capped, then jittered: replicas still spread
    assert backoff_delay(10_000, 0.0, base=1, cap=300) == 150  # no overflow
    assert backoff_delay(1, 0.3, base=1, cap=300, retry_after=42) == 42
    assert backoff_delay(1, 0.3, base=1, cap=30, retry_after=3600) == 30
    assert backoff_delay(1, 0.3, base=1, cap=30, retry_after=-5) == 0
    for attempt, jitter in ((0, 0.5), (1, 1.0), (1, -0.1)):
        with pytest.raises(ValueError, match=r"attempt|jitter"):
            backoff_delay(attempt, jitter, base=1, cap=30)


class FailingBookkeeping:
    """A job store whose outcome records fail for one job (a deadlock, a dropped connection...)."""

    def __init__(self, inner: InMemoryJobStore, bad_job: int) -> None:
        self._inner, self._bad = inner, bad_job

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[Any]:
        async with self._inner.unit_of_work() as uow:
            yield _FailingRecords(uow, self._bad)


class _FailingRecords:
    def __init__(self, uow: Any, bad_job: int) -> None:
        self._uow, self._bad = uow, bad_job

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)

    async def record_dispatch(self, entry: Any, result: Any) -> bool:
        if entry.job_id == self._bad:
            raise RuntimeError("the bookkeeping of this one entry failed")
        return await self._uow.record_dispatch(entry, result)


async def test_one_entrys_failed_bookkeeping_never_resends_the_others(services):
    ids = [await submit(services, f"run{i}") for i in range(3)]
    store, clock, workers = services.adapters.job_store(), services.adapters.clock(), services.adapters.worker_dispatch()
    flaky = FailingBookkeeping(store, bad_job=ids[1])
    dispatcher = Dispatcher(flaky, workers, clock, services.adapters.email_sender(), lease=60, attempt_timeout=5, run_in_background=False)  # type: ignore[arg-type]
    with capture_logs() as logs:
        assert await dispatcher.run_once() == 3
    assert [e["job_id"] for e in logs if e["event"] == "dispatch.record_failed"] == [ids[1]]
    states = [(await services.jobs().get(ALICE, i)).dispatch.status for i in ids]
    assert states == [DispatchStatus.sent, DispatchStatus.pending, DispatchStatus.sent]
    assert await dispatcher.run_once() == 0  # leased until the lease runs out
    clock.advance(61)
    assert await services.dispatcher().run_once() == 1  # only that entry is sent again
    sent = [p["job"]["meta"]["job_id"] for p in workers.submitted]
    assert sorted(sent) == sorted([*ids, ids[1]])


async def test_ready_says_how_long_deliveries_fail_while_the_api_answers_pings(services):
    """A worker-facing API that answers pings but takes no job (too slow): `/ready` stays ready (the
    fault is not this replica's: taking it out of service cures nothing) and says for how long the
    deliveries have failed and how long the oldest job has waited; both clear once one is taken."""
    await submit(services)
    store, clock = services.adapters.job_store(), services.adapters.clock()
    workers = AnswersPingsTakesNoJob()
    dispatcher = Dispatcher(store, workers, clock, services.adapters.email_sender(), run_in_background=False)
    ops = OpsService(store, services.adapters.file_storage(), services.adapters.catalog(), workers, dispatcher.health, clock)
    before = await ops.readiness()
    assert before.checks["workerfacing_api"] == "ok" and before.dispatch.failing_seconds is None
    assert (before.dispatch.backlog, before.dispatch.oldest_pending_seconds) == (1, 0)
    await dispatcher.run_once()
    clock.advance(90)
    await dispatcher.run_once()
    failing = await ops.readiness()
    assert failing.ready
    assert failing.checks["workerfacing_api"] == (
        "failing (answers pings, but timeout: the worker-facing API did not take the job within 10 s);"
        " deliveries failing for 90 s, the oldest undelivered job waiting 90 s; jobs wait"
    )
    assert (failing.dispatch.failing_seconds, failing.dispatch.oldest_pending_seconds, failing.dispatch.fault) == (90, 90, "timeout")
    workers.taking = True
    clock.advance(600)
    await dispatcher.run_once()
    recovered = await ops.readiness()
    assert recovered.checks["workerfacing_api"] == "ok"
    assert (recovered.dispatch.backlog, recovered.dispatch.oldest_pending_seconds, recovered.dispatch.failing_seconds) == (0, None, None)
