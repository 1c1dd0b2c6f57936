"""`AsyncClient.changes` (what `wait` and `decode-cloud watch` follow): woken by the live stream
`GET /jobs/events/stream` where the service has it, reading every poll interval where it has not.

The service is played by an `httpx.MockTransport`, which pins the client's side of the stream
(Server-Sent Events, as docs/api.md describes them): a message about the job triggers a read at once,
other jobs' messages do not matter, and a 404 for the stream falls back to polling. Against the
service's real stream: `test_watch_follows_the_live_stream_and_cancel_events_and_ctrl_c` in
tests/integration/test_client.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx

from decode_cloud import AsyncClient

JOB = {
    "id": 7,
    "job_name": "train1",
    "application": {"application": "decode", "version": "v0_10_1", "entrypoint": "train"},
}


class FakeService:
    def __init__(self, with_stream: bool) -> None:
        self.with_stream = with_stream
        self.status = "queued"
        self.version = 1
        self.reads = 0
        self.changed = asyncio.Event()

    def set_status(self, status: str) -> None:
        self.status, self.version = status, self.version + 1
        self.changed.set()

    async def events(self) -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        seq = 0
        while True:
            await self.changed.wait()
            self.changed.clear()
            seq += 1
            # another job's message first: it must not be needed to see ours
            for job_id in (99, 7):
                data = json.dumps({"seq": seq, "job_id": job_id, "kind": "status", "status": self.status})
                yield f"id: {seq}\nevent: status\ndata: {data}\n\n".encode()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jobs/events/stream":
            if not self.with_stream:
                return httpx.Response(404, json={"detail": "not found"})
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=self.events())
        assert request.url.path == "/jobs/7"
        self.reads += 1
        etag = f'W/"{self.version}"'
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers={"etag": etag})
        return httpx.Response(200, headers={"etag": etag}, json={**JOB, "status": self.status})


async def follow(service: FakeService, poll_interval: float) -> tuple[list[str], float]:
    async def drive() -> None:
        for status in ("running", "finished"):
            await asyncio.sleep(0.2)
            service.set_status(status)

    started = time.monotonic()
    seen = []
    async with AsyncClient("http://service", token="t", transport=httpx.MockTransport(service)) as client:
        driver = asyncio.create_task(drive())
        async for job in client.changes(7, poll_interval=poll_interval):
            seen.append(job.status)
        await driver
    return seen, time.monotonic() - started


async def test_a_stream_message_about_the_job_makes_it_read_at_once():
    service = FakeService(with_stream=True)
    seen, took = await follow(service, poll_interval=60)  # polling alone would take minutes
    assert seen == ["queued", "running", "finished"]
    assert took < 5
    assert service.reads <= 6  # a read per wake-up, not a poll loop


async def test_without_the_stream_it_reads_every_poll_interval():
    service = FakeService(with_stream=False)
    seen, _ = await follow(service, poll_interval=0.05)
    assert seen == ["queued", "running", "finished"]
    assert service.reads > 6  # unchanged reads answered 304 in between
