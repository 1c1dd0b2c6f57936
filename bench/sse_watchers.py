"""1,000 concurrent watchers of GET /jobs/events/stream on one `serve` process (issue 13's acceptance).

    PYTHONPATH=<checkout>/src:<checkout> python bench/sse_watchers.py --database postgres [--watchers 1000]
    ... --database sqlite
    ... --database postgres --replicas 2       # watchers on replica B, status updates sent to replica A

Starts the fake worker-facing API and `decode-userapi serve` (twice with `--replicas 2`, on one
scratch PostgreSQL database, `sse_bench`, dropped first; SQLite: a file in a scratch directory),
signs up one user (or `--users`), creates `--updates` jobs per user and waits until they are
delivered, then:

1. reads the watched server's RSS (VmRSS) after a warm-up of 20 streams opened and closed;
2. opens `--watchers` streams from this process with raw asyncio sockets (spread over the users),
   waits until each has its headers and `retry:` line, and reads RSS again, idle;
3. on PostgreSQL, counts the database's transactions (pg_stat_database) during `--idle` seconds,
   before the streams are opened and with every stream open: idle streams should add none;
4. `--updates` times: sends one status update (`PUT /_job_status`, a job to `running`) per user to
   replica A, one after the other, and times until every watcher has its `status` message: the
   delivery latency of each watcher from the moment its user's update was sent (p50, p99, max);
5. reads RSS and the peak (VmHWM) again, and prints one JSON line.

The open-files limit of this process (and of the servers it starts) is raised to its hard limit;
each watcher needs one descriptor here and one in the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from proc import free_port, memory_kib  # beside this script

BENCH = Path(__file__).resolve().parent
PASSWORD = "sse-bench-password-1"
TRAIN = {"application": "decode", "version": "v0_10_1", "entrypoint": "train"}
STATUS = b"event: status"


class Watcher:
    """One stream over a raw socket: counts `status` messages and when each arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.ended = False
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, host: str, port: int, token: str) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        self.writer = writer
        writer.write(
            f"GET /jobs/events/stream HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"stream refused: {head[:200]!r}")
        first = await reader.readuntil(b"\n\n")  # the retry: line (in its chunk)
        if b"retry:" not in first:
            raise RuntimeError(f"no retry line: {first!r}")
        self._reader = reader

    async def read(self) -> None:
        tail = b""
        while chunk := await self._reader.read(65536):
            now = time.perf_counter()
            seen = tail + chunk
            self.arrivals.extend([now] * seen.count(STATUS))
            tail = seen[-(len(STATUS) - 1) :]
        self.ended = True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def scratch_postgres(admin_url: str, name: str) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def transactions(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"))
    finally:
        await connection.close()


async def idle_transactions(url: str, seconds: float) -> int | None:
    """The database's transactions over `seconds` (PostgreSQL; None on SQLite), less our own read."""
    if not url.startswith("postgresql"):
        return None
    before = await transactions(url)
    await asyncio.sleep(seconds)
    return await transactions(url) - before - 1


def start_server(env: dict[str, str], cwd: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "decode_userapi.entrypoints.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the service did not start")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, env: dict[str, str], tmp: str, url: str) -> dict[str, object]:
    servers = [start_server(env, tmp) for _ in range(args.replicas)]
    watched_process, watched = servers[-1]
    _, updated = servers[0]
    host, port = watched.removeprefix("http://").split(":")
    try:
        async with httpx.AsyncClient(base_url=updated, timeout=30) as http:
            tokens, jobs = [], []
            for u in range(args.users):
                form = {"username": f"watcher{u}@example.org", "password": PASSWORD}
                assert (await http.post("/user", data=form)).status_code == 201
                token = (await http.post("/token", data=form)).json()["id_token"]
                auth = {"Authorization": f"Bearer {token}"}
                r = await http.post("/files/config/c/upload", headers=auth, files={"file": ("p.yaml", b"p: 1")})
                assert r.status_code == 201, r.text
                ids = []
                for n in range(args.updates):
                    body = {"job_name": f"job{n}", "application": TRAIN, "attributes": {"files_down": {"config_id": "c"}}}
                    r = await http.post("/jobs", headers=auth, json=body)
                    assert r.status_code == 201, r.text
                    ids.append(r.json()["id"])
                tokens.append(token)
                jobs.append(ids)
            # Wait until every job was delivered: no dispatch event arrives during the measurements.
            deadline = time.monotonic() + 60
            for token in tokens:
                auth = {"Authorization": f"Bearer {token}"}
                while any(j["dispatch"]["status"] != "sent" for j in (await http.get("/jobs", headers=auth)).json()):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the jobs were not delivered")
                    await asyncio.sleep(0.1)

            warm = [Watcher() for _ in range(20)]
            await asyncio.gather(*(w.connect(host, int(port), tokens[0]) for w in warm))
            for w in warm:
                w.close()
            await asyncio.sleep(2.5)  # PostgreSQL flushes its transaction counts about once a second
            rss_before = memory_kib(watched_process.pid)
            idle_without = await idle_transactions(url, args.idle)

            watchers = [Watcher() for _ in range(args.watchers)]
            started = time.perf_counter()
            for at in range(0, len(watchers), 200):  # connect in waves: the listen backlog is finite
                batch = watchers[at : at + 200]
                await asyncio.gather(*(w.connect(host, int(port), tokens[i % args.users]) for i, w in enumerate(batch, at)))
            connect_seconds = time.perf_counter() - started
            readers = [asyncio.create_task(w.read()) for w in watchers]
            await asyncio.sleep(1.0)
            rss_connected = memory_kib(watched_process.pid)

            idle_with = await idle_transactions(url, args.idle)

            rounds = []
            for n in range(args.updates):
                sent = []  # when each user's update was sent: their watchers' latencies count from it
                for u in range(args.users):
                    body = {"job_id": jobs[u][n], "status": "running"}
                    sent.append(time.perf_counter())
                    r = await http.put("/_job_status", headers={"x-api-key": env["INTERNAL_API_KEY_SECRET"]}, json=body)
                    assert r.status_code == 200, r.text
                deadline = time.perf_counter() + 10
                while sum(len(w.arrivals) > n for w in watchers) < len(watchers) and time.perf_counter() < deadline:
                    await asyncio.sleep(0.005)
                latencies = [(w.arrivals[n] - sent[i % args.users]) * 1000 for i, w in enumerate(watchers) if len(w.arrivals) > n]
                rounds.append(
                    {
                        "received": len(latencies),
                        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
                        "p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
                        "max_ms": round(max(latencies), 1) if latencies else None,
                    }
                )
                await asyncio.sleep(0.5)
            rss_after = memory_kib(watched_process.pid)
            ended = sum(w.ended for w in watchers)
            for w in watchers:
                w.close()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    finally:
        for process, _ in servers:
            process.terminate()
        for process, _ in servers:
            process.wait(30)
    return {
        "database": args.database,
        "replicas": args.replicas,
        "watchers": args.watchers,
        "users": args.users,
        "connect_seconds": round(connect_seconds, 2),
        "rss_before_mib": round(rss_before["VmRSS"] / 1024, 1),
        "rss_connected_mib": round(rss_connected["VmRSS"] / 1024, 1),
        "rss_after_updates_mib": round(rss_after["VmRSS"] / 1024, 1),
        "rss_growth_mib": round((rss_after["VmRSS"] - rss_before["VmRSS"]) / 1024, 1),
        "peak_rss_mib": round(rss_after["VmHWM"] / 1024, 1),
        # The database's transactions while nothing happens, without streams and with them all open:
        # the dispatcher's outbox polls, the feed's ping (every 30 s); streams should add nothing.
        "idle_db_transactions_without_streams": idle_without,
        "idle_db_transactions_with_streams": idle_with,
        "idle_seconds": args.idle if idle_with is not None else None,
        "streams_ended_early": ended,
        "rounds": rounds,
        "worst_max_ms": max((r["max_ms"] or float("inf")) for r in rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--users", type=int, default=1, help="watchers are spread over this many users")
    parser.add_argument("--updates", type=int, default=5, help="rounds of one status update per user")
    parser.add_argument("--replicas", type=int, choices=[1, 2], default=1)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle streams to count transactions over")
    args = parser.parse_args()
    if args.replicas == 2 and args.database != "postgres":
        parser.error("two replicas share a PostgreSQL database")
    limit = raise_open_files()
    if limit < args.watchers + 200:
        parser.error(f"the open-files limit is {limit}: too low for {args.watchers} watchers (ulimit -n)")
    with tempfile.TemporaryDirectory() as tmp:
        url = (
            asyncio.run(scratch_postgres(args.pg_url, "sse_bench"))
            if args.database == "postgres"
            else f"sqlite:///{tmp}/db/userapi.db"
        )
        key = secrets.token_hex(16)
        fake_port = free_port()
        fake = subprocess.Popen([sys.executable, str(BENCH / "fake_workerfacing.py"), "--port", str(fake_port), "--api-key", key],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "AUTH": "1",
            "DECODE_DATA_DIR": f"{tmp}/data",
            "USER_DATA_ROOT_PATH": f"{tmp}/user_data",
            "TOKEN_SIGNING_KEY": "sse-bench-signing-key-0123456789abcdef0123",
            "INTERNAL_API_KEY_SECRET": key,
            "WORKERFACING_API_URL": f"http://127.0.0.1:{fake_port}",
            "LOG_LEVEL": "WARNING",
            "TOKEN_RATE_PER_MINUTE_ADDRESS": "0",  # --users sign-ups from one address
        }
        try:
            result = asyncio.run(run(args, env, tmp, url))
        finally:
            fake.terminate()
            fake.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
