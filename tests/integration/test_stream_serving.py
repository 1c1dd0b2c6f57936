"""Issue 13, live updates across processes: two replicas on one PostgreSQL database (a status update
received by one reaches a watcher of the other within 1 s; their ETags agree), the listener
surviving a killed connection without missing anything, and `serve` stopping promptly with
streams open."""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg
import httpx
import pytest

from decode_userapi.config import Settings
from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from tests.integration.sse import AppServer, open_stream
from tests.integration.test_crash_recovery import Service
from tests.integration.test_http_stream import create_job, next_of, set_status, sign_up


async def _kill_listeners(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return len(
            await connection.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'decode-userapi-listen' AND datname = current_database()"
            )
        )
    finally:
        await connection.close()


@pytest.mark.postgres
@pytest.mark.parametrize("stack", ["local-postgres"], indirect=True)
async def test_two_replicas_share_live_events_and_etags_and_survive_a_lost_listener(settings: Settings):
    with AppServer(create_app(build_services(settings))) as a, AppServer(create_app(build_services(settings))) as b:
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as on_a, httpx.AsyncClient(base_url=b.url, timeout=10) as on_b:
            alice = await sign_up(on_a, "alice@example.org")
            async with open_stream(on_b, alice.headers) as stream:
                job_id = await create_job(on_a, alice, "replicated")
                assert (await next_of(stream, "created")).data["job_id"] == job_id

                started = time.monotonic()
                await set_status(on_a, job_id, "running")  # received by replica A ...
                running = await next_of(stream, "status", timeout=1.0)  # ... reaches B's watcher within 1 s
                assert running.data["status"] == "running"
                assert time.monotonic() - started < 1.0
                # The dispatcher's record of the delivery (a write of its own) may land between two reads:
                # once no write is in flight, both replicas give the same tag.
                for _ in range(50):
                    tags = [(await http.get("/jobs", headers=alice.headers)).headers["etag"] for http in (on_a, on_b, on_a)]
                    if tags[0] == tags[2]:
                        break
                    await asyncio.sleep(0.05)
                assert tags[0] == tags[1] == tags[2]

                # Both listeners' connections are killed; an update meanwhile is not missed.
                assert await _kill_listeners(settings.database_url) == 2
                await set_status(on_a, job_id, "finished", "done")
                finished = await next_of(stream, "status", timeout=5.0)
                assert finished.data["status"] == "finished"
                # ... and the listener is back (without it nothing would ever arrive: there is no polling).
                other = await create_job(on_a, alice, "after")
                await set_status(on_a, other, "running")
                assert (await next_of(stream, "status", timeout=5.0)).data["job_id"] == other


async def test_serve_stops_promptly_with_streams_open(tmp_path, fake_workerfacing):
    service = Service(tmp_path, f"sqlite:///{tmp_path / 'db' / 'userapi.db'}", fake_workerfacing.url)
    service.start()
    try:
        async with httpx.AsyncClient(base_url=service.base, timeout=10) as http:
            alice = await sign_up(http, "alice@example.org")
            async with open_stream(http, alice.headers) as one, open_stream(http, alice.headers) as two:
                job_id = await create_job(http, alice, "before-shutdown")
                for stream in (one, two):
                    assert (await next_of(stream, "created")).data["job_id"] == job_id
                started = time.monotonic()
                service.signal(signal.SIGTERM)
                assert await one.ended(timeout=5) and await two.ended(timeout=5)
                await asyncio.to_thread(service.process.wait, 10)  # type: ignore[union-attr]
                assert time.monotonic() - started < 5, "serve waited for the open streams"
    finally:
        errors = service.stop()
    assert "timeout graceful shutdown exceeded" not in errors
