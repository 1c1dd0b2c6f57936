"""Faults in what we depend on are survived: the database going away, the worker-facing API being
down for a burst of submissions, many concurrent status updates for one job."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from decode_userapi.config import Settings
from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from tests.fakes.fixtures import INTERNAL_API_KEY
from tests.fakes.tcpproxy import ThreadedTcpProxy
from tests.integration.harness import PASSWORD, eventually, outbox_drained

TRAIN = {"application": "decode", "version": "v0_10_1", "entrypoint": "train"}


def job(name: str) -> dict:
    return {"job_name": name, "application": TRAIN, "attributes": {"files_down": {"config_id": "c"}}}


def make_settings(tmp_path: Path, database_url: str, worker_url: str) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        user_data_root_path=str(tmp_path / "data" / "user_data"),
        database_url=database_url,
        workerfacing_api_url=worker_url,
        internal_api_key=INTERNAL_API_KEY,
        token_signing_key="resilience-signing-key-0123456789abcdef",
        dispatch_max_delay_seconds=0.5,
    )


async def login(client: AsyncTestClient, name: str = "ada@example.org") -> dict[str, str]:
    form = {"username": name, "password": PASSWORD}
    assert (await client.post("/user", data=form)).status_code == 201
    token = (await client.post("/token", data=form)).json()["id_token"]
    headers = {"Authorization": f"Bearer {token}"}
    r = await client.post("/files/config/c/upload", headers=headers, files={"file": ("p.yaml", b"p: 1")})
    assert r.status_code == 201
    return headers


@pytest.mark.postgres
async def test_database_outage_answers_503_then_recovers(tmp_path, postgres_database_url, fake_workerfacing):
    url = make_url(postgres_database_url)
    proxy = ThreadedTcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = create_app(build_services(make_settings(tmp_path, proxied, fake_workerfacing.url)))
    try:
        async with AsyncTestClient(app=app) as client:
            headers = await login(client)
            assert (await client.post("/jobs", headers=headers, json=job("before"))).status_code == 201

            proxy.cut()
            for request in (
                client.get("/jobs", headers=headers),
                client.post("/jobs", headers=headers, json=job("during")),
                client.put("/_job_status", headers={"x-api-key": INTERNAL_API_KEY}, json={"job_id": 1, "status": "running"}),
            ):
                r = await request
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] and "database" in r.json()["detail"].lower()

            proxy.restore()
            r = await client.get("/jobs", headers=headers)  # the pool's pre-ping replaces dead connections
            assert r.status_code == 200 and [j["job_name"] for j in r.json()] == ["before"]
            assert (await client.post("/jobs", headers=headers, json=job("after"))).status_code == 201
            received = await eventually(lambda: len(fake_workerfacing.received) == 2 and fake_workerfacing.received)
            assert sorted(p["job"]["meta"]["job_id"] for p in received) == [1, 2]  # each once; order is not promised
    finally:
        proxy.close()


async def test_fifty_submissions_while_the_worker_api_is_down(tmp_path, database_url, fake_workerfacing):
    app = create_app(build_services(make_settings(tmp_path, database_url, fake_workerfacing.url)))
    async with AsyncTestClient(app=app) as client:
        headers = await login(client)
        fake_workerfacing.mode = "down"
        answers = await asyncio.gather(*(client.post("/jobs", headers=headers, json=job(f"j{i}")) for i in range(50)))
        assert [r.status_code for r in answers] == [201] * 50
        ids = sorted(r.json()["id"] for r in answers)
        await eventually(lambda: fake_workerfacing.requests >= 50)
        assert fake_workerfacing.received == []
        fake_workerfacing.mode = "up"
        await eventually(lambda: len(fake_workerfacing.received) >= 50, timeout=60)
        await outbox_drained(client)  # nothing is left to send
    # The app has stopped, after the deliveries under way: a duplicate would be here by now.
    received = fake_workerfacing.received
    keys = [p["job"]["meta"]["idempotency_key"] for p in received]
    assert len(keys) == len(set(keys)) == 50
    assert sorted(p["job"]["meta"]["job_id"] for p in received) == ids


async def test_concurrent_status_updates_stay_consistent(tmp_path, database_url, fake_workerfacing):
    app = create_app(build_services(make_settings(tmp_path, database_url, fake_workerfacing.url)))
    async with AsyncTestClient(app=app) as client:
        headers = await login(client)
        job_id = (await client.post("/jobs", headers=headers, json=job("busy"))).json()["id"]
        statuses = ["pulled", "running", "postprocessing", "finished", "error"] * 20
        answers = await asyncio.gather(
            *(
                client.put(
                    "/_job_status",
                    headers={"x-api-key": INTERNAL_API_KEY},
                    json={"job_id": job_id, "status": s, "runtime_details": f"{s} {i}"},
                )
                for i, s in enumerate(statuses)
            )
        )
        assert {r.status_code for r in answers} == {200}
        final = (await client.get(f"/jobs/{job_id}", headers=headers)).json()
        assert final["status"] in ("finished", "error")
        assert final["date_finished"] is not None
        # Every update after the terminal one was refused: the details end with the terminal update.
        assert final["runtime_details"].splitlines()[-1].split()[0] == final["status"]
