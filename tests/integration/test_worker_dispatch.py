"""HttpWorkerDispatch against the fake worker-facing API (and the fake's own validation)."""

from __future__ import annotations

import copy
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from decode_userapi.adapters.workers.http import HttpWorkerDispatch
from decode_userapi.domain.applications import AppSection, Entrypoint, HandlerSection
from decode_userapi.domain.dispatch import build_worker_request
from decode_userapi.domain.errors import WorkerRejected, WorkerUnavailable
from decode_userapi.domain.jobs import ApplicationSpec, HardwareSpec, Job, JobAttributes
from tests.fakes.fixtures import INTERNAL_API_KEY
from tests.fakes.workerfacing import FakeWorkerFacingApi

FAST = {"timeout": 2.0}


def payload(job_id: int = 1) -> dict[str, Any]:
    """A payload as the domain builds it, so the fake's schema is checked against the real thing."""
    job = Job(
        id=job_id,
        user_id="alice",
        user_email="alice@example.org",
        job_name="run",
        environment="cloud",
        priority=2,
        application=ApplicationSpec("decode", "v0_10_1", "train"),
        attributes=JobAttributes(),
        hardware=HardwareSpec(memory=8000),
        date_created=datetime(2026, 1, 1, tzinfo=UTC),
    )
    entrypoint = Entrypoint(
        app=AppSection(cmd=["/docker/entrypoint.sh", "--train"]),
        handler=HandlerSection(image_url="img:1", files_down={"config_id": "config"}, files_up={"log": "log"}),
    )
    return build_worker_request(
        job, entrypoint, {"config/a.yaml": "/data/alice/config/a.yaml"}, {"output": "/o/", "log": "/l/", "artifact": "/a/"}
    )


@pytest.fixture
async def dispatch_to() -> AsyncIterator[Callable[..., Any]]:
    """Build started HttpWorkerDispatch adapters; all are closed after the test."""
    opened: list[HttpWorkerDispatch] = []

    async def open_(url: str, api_key: str | None = INTERNAL_API_KEY, **options: Any) -> HttpWorkerDispatch:
        dispatch = HttpWorkerDispatch(url, api_key, **{**FAST, **options})
        await dispatch.start()
        opened.append(dispatch)
        return dispatch

    yield open_
    for dispatch in opened:
        await dispatch.aclose()


async def test_success_is_recorded(fake_workerfacing: FakeWorkerFacingApi, dispatch_to):
    dispatch = await dispatch_to(fake_workerfacing.url)
    await dispatch.submit(payload(7))
    assert fake_workerfacing.received == [payload(7)]
    assert fake_workerfacing.requests == 1


async def test_without_the_key_the_api_is_misconfigured_not_the_job(fake_workerfacing: FakeWorkerFacingApi, dispatch_to):
    dispatch = await dispatch_to(fake_workerfacing.url, api_key="rotated-elsewhere")
    with pytest.raises(WorkerUnavailable, match="401") as caught:
        await dispatch.submit(payload())
    assert not isinstance(caught.value, WorkerRejected) and caught.value.kind == "unauthorized"
    assert fake_workerfacing.received == [] and fake_workerfacing.requests == 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, "unauthorized"),
        (403, "unauthorized"),
        (404, "endpoint"),
        (405, "endpoint"),
        (408, "throttled"),
        (429, "throttled"),
        (500, "server_error"),
        (503, "server_error"),
        (418, "unexpected"),
    ],
)
async def test_one_attempt_and_a_fault_worth_retrying(fake_workerfacing: FakeWorkerFacingApi, dispatch_to, status, kind):
    fake_workerfacing.fail_next(1, status)
    dispatch = await dispatch_to(fake_workerfacing.url)
    with pytest.raises(WorkerUnavailable, match=f"HTTP {status}") as caught:
        await dispatch.submit(payload())
    assert not isinstance(caught.value, WorkerRejected) and caught.value.kind == kind
    assert fake_workerfacing.requests == 1  # the dispatcher retries, across time and replicas
    await dispatch.submit(payload())
    assert len(fake_workerfacing.received) == 1


@pytest.mark.parametrize("status", [400, 409, 422])
async def test_only_a_refusal_of_the_payload_is_final(dispatch_to, status):
    dispatch = await dispatch_to(
        "http://worker.invalid", transport=httpx.MockTransport(lambda r: httpx.Response(status, json={"detail": "no"}))
    )
    with pytest.raises(WorkerRejected, match=f"HTTP {status}") as caught:
        await dispatch.submit(payload())
    assert caught.value.kind == "rejected"


async def test_retry_after_is_passed_on(dispatch_to):
    answer = httpx.Response(503, headers={"Retry-After": "7"}, text="busy")
    dispatch = await dispatch_to("http://worker.invalid", transport=httpx.MockTransport(lambda r: answer))
    with pytest.raises(WorkerUnavailable) as caught:
        await dispatch.submit(payload())
    assert caught.value.retry_after == 7.0 and caught.value.kind == "server_error"


async def test_a_timeout_is_a_fault_worth_retrying(fake_workerfacing: FakeWorkerFacingApi, dispatch_to):
    fake_workerfacing.mode, fake_workerfacing.delay = "slow", 0.5
    dispatch = await dispatch_to(fake_workerfacing.url, timeout=0.1)
    with pytest.raises(WorkerUnavailable, match="Timeout") as caught:
        await dispatch.submit(payload())
    assert caught.value.kind == "timeout" and fake_workerfacing.requests == 1


async def test_4xx_of_the_payload_says_why(fake_workerfacing: FakeWorkerFacingApi, dispatch_to):
    bad = payload()
    bad["job"]["meta"]["job_id"] = "seven"
    dispatch = await dispatch_to(fake_workerfacing.url)
    with pytest.raises(WorkerRejected, match=r"HTTP 422.*job_id") as caught:
        await dispatch.submit(bad)
    assert fake_workerfacing.requests == 1
    assert len(caught.value.detail) < 400


async def test_nothing_listening(dispatch_to):
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dispatch = await dispatch_to(f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(WorkerUnavailable, match="ConnectError") as caught:
        await dispatch.submit(payload())
    assert time.monotonic() - started < 1 and caught.value.kind == "connection"
    assert INTERNAL_API_KEY not in caught.value.detail


async def test_the_key_never_reaches_the_detail(dispatch_to):
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text=f"bad request from key {request.headers['x-api-key']}")

    dispatch = await dispatch_to("http://worker.invalid", transport=httpx.MockTransport(echo))
    with pytest.raises(WorkerUnavailable, match="HTTP 400") as caught:
        await dispatch.submit(payload())
    assert INTERNAL_API_KEY not in caught.value.detail and "***" in caught.value.detail


async def test_submit_before_start_is_a_programming_error():
    with pytest.raises(RuntimeError, match="start"):
        await HttpWorkerDispatch("http://127.0.0.1:1", None).submit(payload())


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(body: dict[str, Any]) -> None:
        for key in parents:
            body = body[key]
        del body[last]

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(body: dict[str, Any]) -> None:
        for key in parents:
            body = body[key]
        body[last] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        _without("paths_upload.log"),
        _without("job.handler.image_version"),
        _without("group"),
        _set("job.app.cmd", "run.sh"),
        _set("job.app.cmd", ["run.sh", 1]),
        _set("job.app.env", []),
        _set("job.handler.files_down", {"config/a": 1}),
        _set("job.handler.files_up", ["log"]),
        _set("job.meta.job_id", "1"),
        _set("job.meta.date_created", "yesterday"),
        _set("job.hardware", None),
        _set("environment", "moon"),
        _set("priority", "high"),
        _set("paths_upload.output", None),
        _set("job.surprise", 1),
    ],
)
async def test_the_fake_refuses_payloads_off_the_contract(fake_workerfacing: FakeWorkerFacingApi, change):
    body = copy.deepcopy(payload())
    change(body)
    async with httpx.AsyncClient(base_url=fake_workerfacing.url, headers={"x-api-key": INTERNAL_API_KEY}) as client:
        r = await client.post("/_jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
    assert fake_workerfacing.received == []


async def test_the_fake_checks_the_key(fake_workerfacing: FakeWorkerFacingApi):
    async with httpx.AsyncClient(base_url=fake_workerfacing.url) as client:
        assert (await client.post("/_jobs", json=payload(), headers={"x-api-key": "nope"})).status_code == 401
        assert (await client.post("/_jobs", json=payload())).status_code == 401
    assert fake_workerfacing.received == []
