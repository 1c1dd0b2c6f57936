"""Issue 13, live updates: `GET /jobs/events/stream` sends the caller's job events as they happen,
on SQLite (in-process feed) and PostgreSQL (LISTEN/NOTIFY); a client that reconnects with
`Last-Event-ID` misses nothing; nobody sees another user's events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from decode_userapi.config import Settings
from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from tests.integration.harness import INTERNAL_KEY, PASSWORD, User, stacks
from tests.integration.sse import STREAM, AppServer, SseReader, open_stream

pytestmark = stacks("local-sqlite", "local-postgres")
TRAIN = {"application": "decode", "version": "v0_10_1", "entrypoint": "train"}


@pytest.fixture
def server(settings: Settings) -> Iterator[AppServer]:
    with AppServer(create_app(build_services(settings))) as server:
        yield server


@pytest.fixture
async def http(server: AppServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


async def sign_up(http: httpx.AsyncClient, name: str) -> User:
    form = {"username": name, "password": PASSWORD}
    assert (await http.post("/user", data=form)).status_code == 201
    token = (await http.post("/token", data=form)).json()["id_token"]
    user = User(name, {"Authorization": f"Bearer {token}"})
    r = await http.post("/files/config/c/upload", headers=user.headers, files={"file": ("p.yaml", b"p: 1")})
    assert r.status_code == 201, r.text
    return user


async def create_job(http: httpx.AsyncClient, user: User, name: str) -> int:
    body = {"job_name": name, "application": TRAIN, "attributes": {"files_down": {"config_id": "c"}}}
    r = await http.post("/jobs", headers=user.headers, json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def set_status(http: httpx.AsyncClient, job_id: int, status: str, details: str | None = None) -> None:
    body = {"job_id": job_id, "status": status, "runtime_details": details}
    r = await http.put("/_job_status", headers={"x-api-key": INTERNAL_KEY}, json=body)
    assert r.status_code == 200, r.text


async def next_of(stream: SseReader, *kinds: str, timeout: float = 5.0):
    """The next message of one of `kinds` (dispatch events come in the background, in any order)."""
    while True:
        message = await stream.next(timeout)
        if message.event in kinds:
            return message


async def test_created_and_status_events_arrive_live_and_only_to_their_owner(http):
    alice, bob = await sign_up(http, "alice@example.org"), await sign_up(http, "bob")
    async with open_stream(http, alice.headers) as stream, open_stream(http, bob.headers) as bobs:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-store"
        job_id = await create_job(http, alice, "live")
        created = await stream.next()
        assert created.event == "created"
        assert created.data["job_id"] == job_id and created.data["kind"] == "created"
        assert created.data["job"]["id"] == job_id and created.data["job"]["job_name"] == "live"
        assert int(created.id) == created.data["seq"]
        assert stream.retry is not None

        await set_status(http, job_id, "running", "epoch 1")
        running = await next_of(stream, "status")
        assert running.data["status"] == "running" and running.data["details"] == "epoch 1"
        assert running.data["job"]["status"] == "running"
        assert int(running.id) > int(created.id)

        metrics = (await http.get("/metrics")).text
        assert "decode_userapi_open_streams 2.0" in metrics
        # Bob's stream: his own job's events, and none of Alice's before them.
        bobs_job = await create_job(http, bob, "his")
        first = await bobs.next()
        assert (first.event, first.data["job_id"]) == ("created", bobs_job)


async def test_resume_with_last_event_id_misses_nothing(http):
    alice = await sign_up(http, "alice@example.org")
    async with open_stream(http, alice.headers) as stream:
        job_id = await create_job(http, alice, "resumed")
        created = await stream.next()
    # Disconnected: these happen while nobody watches.
    await set_status(http, job_id, "pulled")
    await set_status(http, job_id, "running")
    await set_status(http, job_id, "finished", "done")
    other = await create_job(http, alice, "second")

    async with open_stream(http, alice.headers | {"Last-Event-ID": created.id}) as stream:
        seen = [(m.event, m.data["job_id"], m.data["status"]) for m in [await stream.next() for _ in range(5)] if m.event != "dispatch"]
        while len(seen) < 4:
            m = await stream.next()
            if m.event != "dispatch":
                seen.append((m.event, m.data["job_id"], m.data["status"]))
        assert seen == [
            ("status", job_id, "pulled"),
            ("status", job_id, "running"),
            ("status", job_id, "finished"),
            ("created", other, "queued"),
        ]
        # ... then live, on the same stream.
        await set_status(http, other, "running")
        assert (await next_of(stream, "status")).data["job_id"] == other

    # Without EventSource: the query parameter does the same.
    async with open_stream(http, alice.headers, last_event_id=created.id) as stream:
        assert (await next_of(stream, "status")).data["status"] == "pulled"


async def test_refusals(http):
    alice = await sign_up(http, "alice@example.org")
    assert (await http.get(STREAM)).status_code == 401
    for bad in ("-1", "x", "1.5", "9" * 30):
        r = await http.get(STREAM, headers=alice.headers | {"Last-Event-ID": bad})
        assert r.status_code == 422, (bad, r.text)
        assert "Last-Event-ID" in r.json()["detail"]
    r = await http.get(STREAM, headers=alice.headers, params={"last_event_id": "abc"})
    assert r.status_code == 422


async def test_concurrent_writes_reach_a_watcher_once_each_and_a_resumed_one_misses_none(http):
    alice = await sign_up(http, "alice@example.org")
    async with open_stream(http, alice.headers) as steady:
        interrupted = open_stream(http, alice.headers)
        first_half = await interrupted.__aenter__()
        jobs = [await create_job(http, alice, f"c{n}") for n in range(8)]

        async def drive(job_id: int) -> None:
            for status in ("pulled", "running", "finished"):
                await set_status(http, job_id, status)

        driving = asyncio.gather(*(drive(j) for j in jobs))
        got_first = [await first_half.next() for _ in range(12)]  # then the connection drops mid-way
        await interrupted.__aexit__(None, None, None)
        await driving
        expected = set()
        for job_id in jobs:
            history = (await http.get(f"/jobs/{job_id}/events", headers=alice.headers)).json()
            expected |= {e["id"] for e in history if not e["ignored"]}

        async def drain(stream: SseReader, before: list) -> list:
            have: list = []
            while {m.data["id"] for m in before + have} < expected:
                have.append(await stream.next())
            return have

        steady_got = await drain(steady, [])
        assert len(steady_got) == len(expected)  # each once
        await steady.nothing_for(0.2)
        assert [m.data["seq"] for m in steady_got] == sorted(m.data["seq"] for m in steady_got)
        last_id = next(m.id for m in reversed(got_first) if m.id is not None)
        async with open_stream(http, alice.headers | {"Last-Event-ID": last_id}) as resumed:
            second_half = await drain(resumed, got_first)
        assert {m.data["id"] for m in got_first + second_half} == expected
