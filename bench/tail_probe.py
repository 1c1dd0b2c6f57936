"""Where the slowest requests wait: the service under closed-loop load, instrumented from inside.

    python bench/tail_probe.py                          # GET /jobs?limit=100, 3 x 3,000 requests, 32 connections
    python bench/tail_probe.py --scenario status        # PUT /_job_status instead
    python bench/tail_probe.py --runs 3000:32 3000:64   # requests:connections, one line each
    python bench/tail_probe.py --src /tmp/old/src       # A/B: an older checkout's src/ (git archive REV src)
    python bench/tail_probe.py --set DATABASE_POOL_SIZE=32

Unlike `bench/run` it needs no wrk and pins no core for long: a bounded number of requests, from a
small asyncio client of its own (raw HTTP/1.1 on keep-alive connections, every latency kept), so it
can run on a busy machine. Read the ratios (p99/p50, where the tail waits), not the req/s.

It creates the scratch database `decode_tail_probe`, starts the fast fake worker-facing API and the
service (in a child process on core 0, the client on core 1, like the benchmark), seeds one user
with 1,000 jobs through the API, then for each run prints the client's latency percentiles and what
the service saw meanwhile:

- server time: from the ASGI call to the end of the answer (the rest of the client's latency is
  the socket and the event loop's queue);
- Database queue, SQLAlchemy pool: time spent waiting for a database connection, in `Database`'s
  own first-come-first-served queue (versions before it have none) and then in SQLAlchemy's pool;
- loop lag: how late a 5 ms `asyncio.sleep` wakes up (how long one loop iteration runs);
- GC pauses by generation (`gc.callbacks`).

Everything it started is stopped and the database dropped on exit. 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DB_NAME = "decode_tail_probe"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def describe(name: str, seconds: list[float]) -> str:
    if not seconds:
        return f"{name}: none"
    ms = [s * 1000 for s in seconds]
    return (f"{name}: n={len(ms)} p50 {pct(ms, 50):.2f} p90 {pct(ms, 90):.2f} p99 {pct(ms, 99):.2f} "
            f"p99.9 {pct(ms, 99.9):.2f} max {max(ms):.2f} ms")


# -- the instrumented service (child process) ---------------------------------------------------


def serve(port: int) -> None:
    import uvicorn
    from sqlalchemy.util import queue as sa_queue

    from decode_userapi.adapters import sql
    from decode_userapi.config import Settings
    from decode_userapi.container import build_services
    from decode_userapi.entrypoints.http.app import create_app, settle_heap
    from decode_userapi.logging import configure_logging

    seen: dict[str, list[Any]] = {"queue": [], "pool": [], "gc": [], "lag": [], "server": []}

    # Connection waits: the pool's queue, and `Database`'s own queue in front of it when it has one.
    def timed(fn: Any, is_async: bool, into: str) -> Any:
        if is_async:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    seen[into].append(time.perf_counter() - started)
        else:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    seen[into].append(time.perf_counter() - started)
        return wrapper

    sa_queue.AsyncAdaptedQueue.get = timed(sa_queue.AsyncAdaptedQueue.get, False, "pool")  # type: ignore[method-assign]
    if hasattr(sql.Database, "_turn"):
        sql.Database._turn = timed(sql.Database._turn, True, "queue")  # type: ignore[method-assign]

    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            seen["gc"].append((info["generation"], time.perf_counter() - gc_started[0]))

    gc.callbacks.append(on_gc)

    async def lag_monitor() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            seen["lag"].append(time.perf_counter() - started - 0.005)

    configure_logging()
    app = create_app(build_services(Settings.from_env()))
    settle_heap()
    monitor: list[asyncio.Task[None]] = []

    async def probe_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" and not monitor:
            monitor.append(asyncio.get_running_loop().create_task(lag_monitor()))
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if scope["path"] == "/_probe":  # what was seen since the last call
            body = json.dumps(seen).encode()
            for values in seen.values():
                values.clear()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return None
        started = time.perf_counter()
        try:
            await app(scope, receive, send)
        finally:
            seen["server"].append(time.perf_counter() - started)
        return None

    uvicorn.run(probe_app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=True,
                timeout_graceful_shutdown=30)


# -- the load (child process) -------------------------------------------------------------------


async def load(port: int, scenario: str, credential: str, ids: list[int], connections: int, total: int) -> dict[str, Any]:
    """`total` requests over `connections` keep-alive connections, each sending its next request
    as soon as the answer is read; every latency kept."""
    cycle = itertools.cycle(ids)

    def request() -> bytes:
        if scenario == "list":
            return (f"GET /jobs?limit=100 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {credential}\r\n\r\n").encode()
        body = json.dumps({"job_id": next(cycle), "status": "running", "runtime_details": None}).encode()
        return (f"PUT /_job_status HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {credential}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body

    left = [total]
    latencies: list[float] = []
    failures = [0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while left[0] > 0:
            left[0] -= 1
            started = time.perf_counter()
            writer.write(request())
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            failures[0] += head[9:12] != b"200"
        writer.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(connections))), 600)
    return {"latencies": latencies, "seconds": time.perf_counter() - started, "failures": failures[0]}


# -- orchestration ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scenario", choices=["list", "status"], default="list")
    parser.add_argument("--runs", nargs="+", default=["3000:32"] * 3, help="requests:connections (default 3 x 3000:32)")
    parser.add_argument("--src", help="import decode_userapi from this src/ folder (A/B an older checkout)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a service setting")
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL") or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.load:
        spec = json.loads(args.load)
        print(json.dumps(asyncio.run(load(**spec))))
        return 0

    import asyncpg
    import httpx

    sys.path.insert(0, str(BENCH_DIR))
    import seed
    from proc import cpu_seconds, free_port

    def admin(sql: str) -> None:
        async def go() -> None:
            connection = await asyncpg.connect(args.pg, timeout=10)
            try:
                await connection.execute(sql)
            finally:
                await connection.close()
        asyncio.run(go())

    tmp = Path(tempfile.mkdtemp(prefix="decode-tail-"))
    key, fake_port, port = secrets.token_hex(16), free_port(), free_port()
    db_url = args.pg.rsplit("/", 1)[0] + f"/{DB_NAME}"
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL", "TZ") if name in os.environ}
    env.update({
        "DECODE_DATA_DIR": str(tmp / "data"), "USER_DATA_ROOT_PATH": str(tmp / "data" / "user_data"), "AUTH": "1",
        "FILESYSTEM": "local", "DATABASE_URL": db_url, "INTERNAL_API_KEY_SECRET": key,
        "WORKERFACING_API_URL": f"http://127.0.0.1:{fake_port}", "LOG_LEVEL": "WARNING", "EMAIL_SENDER_SERVICE": "",
        "APPLICATION_CONFIG_FILE": str(ROOT / "application_config.yaml"),
    })
    env.update(item.split("=", 1) for item in args.set)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    processes: list[subprocess.Popen[bytes]] = []
    admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    admin(f"CREATE DATABASE {DB_NAME}")
    try:
        processes.append(subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, str(BENCH_DIR / "fake_workerfacing.py"), "--port", str(fake_port),
             "--api-key", key], cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with open(tmp / "service.log", "wb") as log:  # the child keeps its own descriptor
            service = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--serve", str(port)],
                                       cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(service)
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if service.poll() is not None:
                raise SystemExit(f"the service did not start:\n{(tmp / 'service.log').read_text()[-2000:]}")
            time.sleep(0.1)

        async def seed_jobs() -> tuple[str, list[int]]:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                token = await seed.register(client, "tail@example.org")
                await seed.seed_inputs(client, token)
                names = [f"seed-{i:05d}" for i in range(1000)]
                return token, await seed.submit_jobs(client, token, names, 32, deadline=120)

        token, ids = asyncio.run(seed_jobs())
        time.sleep(2)  # the seeded jobs' deliveries
        httpx.get(base + "/_probe")
        print(f"service {'from ' + args.src if args.src else 'from this checkout'}; {args.scenario}; "
              f"settings {args.set or 'defaults'}")
        for run in args.runs:
            total, connections = (int(x) for x in run.split(":"))
            spec = {"port": port, "scenario": args.scenario, "credential": token if args.scenario == "list" else key,
                    "ids": ids, "connections": connections, "total": total}
            cpu_before = cpu_seconds(service.pid)
            done = subprocess.run(["taskset", "-c", "1", sys.executable, __file__, "--load", json.dumps(spec)],
                                  capture_output=True, text=True, timeout=700, check=True)
            cpu = cpu_seconds(service.pid) - cpu_before
            result = json.loads(done.stdout)
            seen = httpx.get(base + "/_probe").json()
            latencies = result["latencies"]
            p50, p99 = pct(latencies, 50), pct(latencies, 99)
            print(f"== {total} requests on {connections} connections: {total / result['seconds']:,.0f} req/s, "
                  f"CPU {cpu * 1000 / total:.3f} ms/req, {result['failures']} not 200; p99/p50 = {p99 / p50:.1f}")
            print("   " + describe("client latency ", latencies))
            print("   " + describe("server time    ", seen["server"]))
            print("   " + describe("Database queue ", seen["queue"]) + ("" if seen["queue"] else " (this version has none)"))
            print("   " + describe("SQLAlchemy pool", seen["pool"]))
            print("   " + describe("loop lag       ", seen["lag"]))
            for generation in (0, 1, 2):
                pauses = [d for g, d in seen["gc"] if g == generation]
                print("   " + describe(f"GC gen {generation}       ", pauses)
                      + (f", total {sum(pauses) * 1000:.1f} ms" if pauses else ""))
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
