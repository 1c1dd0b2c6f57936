"""CPU per call of the job store's hot paths on PostgreSQL, in process (no HTTP, no load generator).

    PYTHONPATH=<checkout>/src python bench/store_cpu.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
        [--calls 2000] [--rounds 5]

Measures, with `time.process_time()` (this process's CPU: the driver, SQLAlchemy, msgspec, our
mapping; not the server's), what `GET /jobs?limit=100` costs the store (`list_for_user`, 100 jobs),
what `PUT /_job_status` costs it (`get` then `replace_status`) and what `POST /jobs` costs it
(`add_with_dispatch`); for the two writes also the wall time per call (`*_wall_us`, which a busy
machine makes noisy) and the PostgreSQL server's CPU per call (`*_server_cpu_us`: the backends'
user + system time from /proc, when the server runs on this machine; 10 ms ticks, so use enough
calls): what the event a write records since #13 costs happens on the server. It uses only the JobStore API
that every checkout since the outbox has, so the same script compares two checkouts (A/B): each
gets a scratch database of its own (the schema revisions may differ). Prints one JSON line with the
median of `rounds` rounds of `calls` calls each, in microseconds of CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec

import decode_userapi
from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from decode_userapi.domain.jobs import ApplicationSpec, FilesDown, HardwareSpec, Job, JobAttributes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PAYLOAD = {"job": {"app": {"cmd": ["run"], "env": {}}, "meta": {}}, "paths_upload": {"output": "/o"}}


def job(i: int) -> Job:
    return Job(
        user_id="alice",
        user_email="alice@example.org",
        job_name=f"job-{i:04d}",
        environment="cloud",
        priority=1,
        application=ApplicationSpec("decode", "v0_10_1", "train"),
        attributes=JobAttributes(
            files_down=FilesDown(config_id="run1", data_ids=["run1", "run2"]), env_vars={"SEED": str(i)}
        ),
        hardware=HardwareSpec(cpu_cores=4, memory=16000, gpu_model="A100"),
        date_created=T0 + timedelta(seconds=i),
        runtime_details="pulled by worker 3",
    )


async def scratch_database(admin_url: str) -> str:
    """A fresh database named after this checkout, so A and B never share a schema."""
    checkout = Path(decode_userapi.__file__).resolve().parents[2]
    name = "store_cpu_" + hashlib.sha1(str(checkout).encode()).hexdigest()[:10]
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


class ServerCpu:
    """The CPU time (s) of the PostgreSQL backends serving `database`, from /proc (None if unreadable)."""

    def __init__(self, admin_url: str, database: str) -> None:
        self.admin_url, self.database = admin_url, database
        self.tick = os.sysconf("SC_CLK_TCK")

    async def seconds(self) -> float | None:
        admin = await asyncpg.connect(self.admin_url)
        try:
            pids = [r[0] for r in await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database)]
        finally:
            await admin.close()
        total = 0
        try:
            for pid in pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except OSError:
            return None
        return total / self.tick


async def cpu_per_call(
    calls: int, call: object, wall: list[float] | None = None, server: tuple[ServerCpu, list[float]] | None = None
) -> float:
    """CPU per call (µs); the wall time and the server's CPU per call are appended to `wall` and
    `server[1]` if given."""
    server_before = await server[0].seconds() if server else None
    started, started_wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        await call(i)  # type: ignore[operator]
    cpu = (time.process_time() - started) / calls * 1e6
    if wall is not None:
        wall.append((time.perf_counter() - started_wall) / calls * 1e6)
    if server and server_before is not None and (server_after := await server[0].seconds()) is not None:
        server[1].append((server_after - server_before) / calls * 1e6)
    return cpu


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    url = await scratch_database(args.url)
    store = SqlJobStore(Database(url, pool_size=2))
    await store.start()
    try:
        jobs = [await store.add_with_dispatch(job(i), PAYLOAD) for i in range(101)]
        target = jobs[0].id
        assert target is not None and len(await store.list_for_user("alice", offset=0, limit=100)) == 100

        async def list_page(i: int) -> None:
            await store.list_for_user("alice", offset=0, limit=100)

        async def status_update(i: int) -> None:  # what PUT /_job_status does: read, compare and set
            current = await store.get(target)
            assert current is not None
            changed = msgspec.structs.replace(current, runtime_details=f"tick {i}")
            assert await store.replace_status(current, changed)

        added = iter(range(1000, 10**9))

        async def add_job(i: int) -> None:  # what POST /jobs does to the store
            await store.add_with_dispatch(job(next(added)), PAYLOAD)

        for call in (list_page, status_update, add_job):  # warm up: pool, prepared statements, compiled SQL
            await cpu_per_call(50, call)
        results: dict[str, list[float]] = {"list_100": [], "get_replace_status": [], "add_with_dispatch": []}
        for name in ("get_replace_status", "add_with_dispatch"):
            results |= {f"{name}_wall": [], f"{name}_server_cpu": []}
        server = ServerCpu(args.url, url.rsplit("/", 1)[1])
        for _ in range(args.rounds):  # interleaved, so drifts of a shared machine hit both alike
            results["list_100"].append(await cpu_per_call(max(1, args.calls // 10), list_page))
            for name, call, calls in (("get_replace_status", status_update, args.calls), ("add_with_dispatch", add_job, args.calls // 4)):
                measured = await cpu_per_call(max(1, calls), call, results[f"{name}_wall"], (server, results[f"{name}_server_cpu"]))
                results[name].append(measured)
        print(json.dumps({
            "checkout": str(Path(decode_userapi.__file__).resolve().parents[2]),
            **{f"{k}_us" if k.endswith(("_wall", "_cpu")) else f"{k}_cpu_us": round(statistics.median(v), 1)
               for k, v in results.items() if v},
            "rounds": {k: [round(x, 1) for x in v] for k, v in results.items()},
        }))  # fmt: skip
    finally:
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
