"""CPU per request of `GET /jobs?limit=100`: the full answer against a poll answered 304, in process.

    PYTHONPATH=<checkout>/src:<checkout> python bench/poll_cpu.py
        [--url postgresql://postgres@127.0.0.1:5432/postgres]
        [--jobs 1000] [--requests 500] [--rounds 5]

The whole app (middleware, guard, token check, service, store on PostgreSQL) through httpx's ASGI
transport in one event loop; `time.process_time()` counts this process's CPU: the app's, and the
client's, which is the same for both kinds of request (`GET /`, the constant answer, shows how much
app and client cost at the least; `GET /user` adds the token check). Not the database server's.
Prints one JSON line: medians of `rounds` interleaved rounds, in µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import structlog

from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from decode_userapi.config import Settings
from decode_userapi.container import build_services
from decode_userapi.domain.jobs import ApplicationSpec, FilesDown, HardwareSpec, Job, JobAttributes
from decode_userapi.entrypoints.http.app import create_app

USER, PASSWORD = "alice", "correct-horse-1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(i: int) -> Job:
    return Job(
        user_id=USER, user_email="alice@example.org", job_name=f"job-{i:05d}", environment="cloud", priority=1,
        application=ApplicationSpec("decode", "v0_10_1", "train"),
        attributes=JobAttributes(files_down=FilesDown(config_id="run1", data_ids=["run1"]), env_vars={"SEED": str(i)}),
        hardware=HardwareSpec(cpu_cores=4, memory=16000, gpu_model="A100"),
        date_created=T0 + timedelta(seconds=i), runtime_details="pulled by worker 3",
    )  # fmt: skip


async def scratch(admin_url: str) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute('DROP DATABASE IF EXISTS "poll_cpu" WITH (FORCE)')
        await admin.execute('CREATE DATABASE "poll_cpu"')
    finally:
        await admin.close()
    return admin_url.rsplit("/", 1)[0] + "/poll_cpu"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # Logs off: writing a line per request to a terminal would be most of what is measured.
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    url = await scratch(args.url)
    store = SqlJobStore(Database(url, pool_size=1))
    await store.start()
    for i in range(args.jobs):
        await store.add_with_dispatch(job(i), {"job": {}})
    await store.aclose()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=tmp, user_data_root_path=f"{tmp}/user_data", database_url=url, auth=True,
            token_signing_key="poll-cpu-signing-key-0123456789abcdef0123", internal_api_key="k",
            workerfacing_api_url="http://127.0.0.1:9",
        )  # fmt: skip
        services = build_services(settings)
        services.background_dispatch.override(False)  # the seeded jobs stay pending: no sender noise
        app = create_app(services)
        transport = httpx.ASGITransport(app=app)  # in this event loop: no test client's thread in the way
        async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await client.post("/user", data={"username": USER, "password": PASSWORD})
            token = (await client.post("/token", data={"username": USER, "password": PASSWORD})).json()["id_token"]
            auth = {"Authorization": f"Bearer {token}"}
            full = await client.get("/jobs?limit=100", headers=auth)
            assert full.status_code == 200 and len(full.json()) == 100
            polled = {**auth, "If-None-Match": full.headers["etag"]}
            assert (await client.get("/jobs?limit=100", headers=polled)).status_code == 304

            async def cpu(path: str, headers: dict[str, str], status: int, count: int) -> float:
                started = time.process_time()
                for _ in range(count):
                    r = await client.get(path, headers=headers)
                    assert r.status_code == status, r.status_code
                return (time.process_time() - started) / count * 1e6

            kinds = {
                "full_200": ("/jobs?limit=100", auth, 200),
                "poll_304": ("/jobs?limit=100", polled, 304),
                "constant_get_root": ("/", {}, 200),
                "signed_in_get_user": ("/user", auth, 200),  # the token check, no job store
            }
            for path, headers, status in kinds.values():
                await cpu(path, headers, status, 30)  # warm up
            results: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for kind, (path, headers, status) in kinds.items():
                    count = args.requests // 5 if kind == "full_200" else args.requests
                    results[kind].append(await cpu(path, headers, status, count))
    medians = {k: round(statistics.median(v), 1) for k, v in results.items()}
    print(json.dumps({
        **{f"{k}_cpu_us": v for k, v in medians.items()},
        "full_over_poll": round(medians["full_200"] / medians["poll_304"], 2),
        "rounds": {k: [round(x, 1) for x in v] for k, v in results.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
