"""What the job's current state in each live-stream message costs: one read of the stream's fan-out
(`StreamService.read`: the user's new events, plus each job's row) with and without job views.

    PYTHONPATH=<checkout>/src:<checkout> python bench/sse_read_cost.py [--database postgres|sqlite] [--reads 2000]

Seeds one user with one job and one status event (the usual notification: one write, one job) in
a scratch database (`sse_read_cost` on PostgreSQL, dropped first; a temporary SQLite file), then
times `--reads` reads of it each way, interleaved in 5 rounds, and prints the medians (µs per
read, in this process) and the size of one encoded message each way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime

import asyncpg
import msgspec
import structlog

from decode_userapi.adapters.feed.memory import InProcessChangeFeed
from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from decode_userapi.domain.commands import ApplicationSpec
from decode_userapi.domain.jobs import Job, JobAttributes, JobStatus
from decode_userapi.services.stream import StreamService

USER = "reader@example.org"


async def scratch(admin_url: str) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute('DROP DATABASE IF EXISTS "sse_read_cost" WITH (FORCE)')
        await admin.execute('CREATE DATABASE "sse_read_cost"')
    finally:
        await admin.close()
    return admin_url.rsplit("/", 1)[0] + "/sse_read_cost"


async def measure(url: str, reads: int) -> dict[str, object]:
    store = SqlJobStore(Database(url, pool_size=2))
    await store.start()
    try:
        job = Job(
            user_id=USER, user_email=USER, job_name="measured", environment=None, priority=0,
            application=ApplicationSpec(application="decode", version="v0_10_1", entrypoint="train"),
            attributes=JobAttributes(), hardware=None, date_created=datetime.now(UTC),
        )  # fmt: skip
        added = await store.add_with_dispatch(job, {"job": {}})
        running = msgspec.structs.replace(added, status=JobStatus.running, date_started=datetime.now(UTC))
        assert await store.replace_status(added, running, details="epoch 1 of 30")
        events = await store.events_since(USER, 0, 10)
        after = events[-1].seq - 1  # the read a notification of the status update makes
        services = {views: StreamService(store, InProcessChangeFeed(), job_views=views) for views in (True, False)}
        sizes = {views: len((await s.read(USER, after))[0][-1].data) for views, s in services.items()}
        rounds: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(6):
            for views, service in services.items():
                started = time.perf_counter()
                for _ in range(reads):
                    await service.read(USER, after)
                rounds[views].append((time.perf_counter() - started) / reads * 1e6)
        with_views, without = (statistics.median(rounds[v][1:]) for v in (True, False))  # round 1 warms up
        return {
            "read_with_job_view_us": round(with_views, 1),
            "read_without_job_view_us": round(without, 1),
            "job_view_costs_us": round(with_views - without, 1),
            "message_bytes_with_job_view": sizes[True],
            "message_bytes_without_job_view": sizes[False],
        }
    finally:
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory() as tmp:
        url = asyncio.run(scratch(args.pg_url)) if args.database == "postgres" else f"sqlite:///{tmp}/cost.db"
        print(json.dumps({"database": args.database, **asyncio.run(measure(url, args.reads))}))


if __name__ == "__main__":
    main()
