"""The dispatcher against the fake worker-facing API when it is misconfigured, and across replicas
whose clocks disagree: jobs wait rather than fail, operators are told, each job is sent once."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from decode_userapi.adapters.clock import SystemClock
from decode_userapi.adapters.email.log import LogEmailSender
from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from decode_userapi.adapters.workers.http import HttpWorkerDispatch
from decode_userapi.container import build_services
from decode_userapi.domain.dispatch import RetryPolicy
from decode_userapi.domain.errors import DomainError
from decode_userapi.entrypoints.http.app import create_app
from decode_userapi.services.dispatcher import Dispatcher
from tests.fakes.fixtures import INTERNAL_API_KEY
from tests.fakes.workerfacing import FakeWorkerFacingApi
from tests.integration.harness import eventually
from tests.integration.test_job_store import make_job
from tests.integration.test_resilience import job, login, make_settings
from tests.integration.test_worker_dispatch import payload


async def test_a_rotated_key_keeps_fifty_jobs_waiting_says_so_and_they_go_once_fixed(
    tmp_path, database_url, fake_workerfacing: FakeWorkerFacingApi
):
    app = create_app(build_services(make_settings(tmp_path, database_url, fake_workerfacing.url)))
    with capture_logs() as logs:
        async with AsyncTestClient(app=app) as client:
            headers = await login(client)
            fake_workerfacing.api_key = "rotated-on-the-worker-side"  # every submission answered 401
            try:
                answers = await asyncio.gather(*(client.post("/jobs", headers=headers, json=job(f"j{i}")) for i in range(50)))
                assert [r.status_code for r in answers] == [201] * 50
                await eventually(lambda: fake_workerfacing.requests >= 100, timeout=30)  # retried, not given up
                ready = await client.get("/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"]["workerfacing_api"].startswith("misconfigured (the worker-facing API answered HTTP 401")
                metrics = (await client.get("/metrics")).text
                assert 'decode_userapi_dispatch_failures{kind="unauthorized"}' in metrics
                assert "decode_userapi_workerfacing_api_misconfigured 1.0" in metrics
                waiting = (await client.get("/jobs?limit=100", headers=headers)).json()
                assert {(j["status"], j["dispatch"]["status"]) for j in waiting} == {("queued", "pending")}
                assert all("HTTP 401" in j["dispatch"]["last_error"] for j in waiting if j["dispatch"]["attempts"])
            finally:
                fake_workerfacing.api_key = INTERNAL_API_KEY  # the secret is fixed
            received = await eventually(lambda: len(fake_workerfacing.received) >= 50 and fake_workerfacing.received, timeout=60)
            await asyncio.sleep(0.5)  # a duplicate would arrive now
            assert len({p["job"]["meta"]["job_id"] for p in fake_workerfacing.received}) == len(received) == 50
            done = (await client.get("/jobs?limit=100", headers=headers)).json()
            assert {(j["status"], j["dispatch"]["status"], j["dispatch"]["last_error"]) for j in done} == {("queued", "sent", None)}
            assert (await client.get("/ready")).json()["checks"]["workerfacing_api"] == "ok"
            assert "decode_userapi_workerfacing_api_misconfigured 0.0" in (await client.get("/metrics")).text
    faults = [e for e in logs if e["event"] == "dispatch.workerfacing_api_fault"]
    assert [(e["log_level"], e["kind"], e["misconfigured"]) for e in faults] == [("error", "unauthorized", True)]
    assert "HTTP 401" in faults[0]["error"]
    assert [e["after"] for e in logs if e["event"] == "dispatch.workerfacing_api_recovered"] == ["unauthorized"]
    assert not [e for e in logs if e["event"] == "dispatch.failed"]


class SkewedClock(SystemClock):
    def __init__(self, seconds: float) -> None:
        self._skew = timedelta(seconds=seconds)

    def now(self) -> datetime:
        return super().now() + self._skew


class Timed:
    """A WorkerDispatch that notes when each job's attempts happened (monotonic time) and how they ended."""

    def __init__(self, inner: HttpWorkerDispatch, attempts: list[tuple[int, float, bool]]) -> None:
        self._inner, self.attempts = inner, attempts

    async def submit(self, body: dict[str, Any]) -> None:
        try:
            await self._inner.submit(body)
        except DomainError:
            self.attempts.append((body["job"]["meta"]["job_id"], time.monotonic(), False))
            raise
        self.attempts.append((body["job"]["meta"]["job_id"], time.monotonic(), True))

    async def ping(self) -> str | None:
        return await self._inner.ping()

    async def start(self) -> None:
        await self._inner.start()

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.mark.postgres
async def test_replicas_whose_clocks_differ_by_30_s_send_each_job_once_and_on_time(
    postgres_database_url, fake_workerfacing: FakeWorkerFacingApi
):
    poll, attempts = 0.1, []
    policy = RetryPolicy(base_delay=1.0, max_delay=1.0)  # every retry due 0.5-1 s after the failure
    replicas = []
    for skew in (0.0, 30.0):
        store = SqlJobStore(Database(postgres_database_url))
        workers = Timed(HttpWorkerDispatch(fake_workerfacing.url, INTERNAL_API_KEY, timeout=2.0), attempts)
        dispatcher = Dispatcher(
            store, workers, SkewedClock(skew), LogEmailSender(), policy=policy, poll_interval=poll, lease=10, attempt_timeout=3
        )
        replicas.append((store, workers, dispatcher))
    for store, workers, _ in replicas:
        await store.start()
        await workers.start()
    jobs = 12
    for i in range(jobs):  # half recorded by each replica, each with its own clock's date
        store = replicas[i % 2][0]
        created = SkewedClock(30.0 * (i % 2)).now()
        await store.add_with_dispatch(make_job(f"skew-{i}", created=created), payload())
    fake_workerfacing.fail_next(jobs, 503)  # every job's first attempt fails: each needs one retry
    started = time.monotonic()
    try:
        for _, _, dispatcher in replicas:
            await dispatcher.start()
        await eventually(lambda: len(fake_workerfacing.received) >= jobs, timeout=20)
        await asyncio.sleep(1.5)  # anything sent twice, or retried too early, would show now
    finally:
        for store, workers, dispatcher in replicas:
            await dispatcher.aclose()
            await workers.aclose()
            await store.aclose()
    delivered = [p["job"]["meta"]["job_id"] for p in fake_workerfacing.received]
    assert len(delivered) == len(set(delivered)) == jobs
    slack = 0.15  # a claim's round trips and the event loop
    for job_id in set(delivered):
        tries = [(when, ok) for i, when, ok in attempts if i == job_id]
        assert [ok for _, ok in tries] == [False, True], tries
        (failed_at, _), (sent_at, _) = tries
        assert failed_at - started < poll + slack + 0.5  # due at once, whichever clock recorded it
        assert 0.5 - slack <= sent_at - failed_at <= 1.0 + poll + slack, (job_id, sent_at - failed_at)
