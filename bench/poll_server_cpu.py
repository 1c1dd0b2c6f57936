"""Server CPU per request of `GET /jobs?limit=100`, full answer against 304, with the service as it runs.

    PYTHONPATH=<checkout>/src:<checkout> python bench/poll_server_cpu.py [--jobs 1000] [--requests 400]

Seeds a scratch PostgreSQL database (as bench/poll_cpu.py), starts `decode-userapi serve` on a free
loopback port (logs at WARNING), sends `requests` sequential requests of each kind from this
process, and reads the server process's CPU from /proc: medians of 5 interleaved rounds, in µs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
from poll_cpu import PASSWORD, USER, job, scratch  # beside this script

from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from decode_userapi.domain.jobs import DispatchStatus
from decode_userapi.ports.jobs import DispatchResult


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def seed(url: str, count: int) -> None:
    store = SqlJobStore(Database(url, pool_size=1))
    await store.start()
    for i in range(count):
        await store.add_with_dispatch(job(i), {"job": {}})
    async with store.unit_of_work() as uow:  # as if delivered: the server's sender has nothing to do
        for entry in await uow.claim_dispatches(60, count):
            await uow.record_dispatch(entry, DispatchResult(DispatchStatus.sent, 1))
    await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    url = asyncio.run(scratch(args.url))
    asyncio.run(seed(url, args.jobs))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATABASE_URL": url, "AUTH": "1", "DATA_DIR": tmp, "USER_DATA_ROOT_PATH": f"{tmp}/u",
               "TOKEN_SIGNING_KEY": "poll-cpu-signing-key-0123456789abcdef0123", "INTERNAL_API_KEY_SECRET": "k",
               "WORKERFACING_API_URL": "http://127.0.0.1:9", "LOG_LEVEL": "WARNING"}  # fmt: skip
        server = subprocess.Popen([sys.executable, "-m", "decode_userapi.entrypoints.cli", "serve", "--port", str(port)],
                                  env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for _ in range(300):
                    try:
                        client.get("/")
                        break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                client.post("/user", data={"username": USER, "password": PASSWORD})
                token = client.post("/token", data={"username": USER, "password": PASSWORD}).json()["id_token"]
                auth = {"Authorization": f"Bearer {token}"}
                full = client.get("/jobs?limit=100", headers=auth)
                assert full.status_code == 200 and len(full.json()) == 100
                polled = {**auth, "If-None-Match": full.headers["etag"]}
                kinds = {"full_200": ("/jobs?limit=100", auth, 200), "poll_304": ("/jobs?limit=100", polled, 304),
                         "get_root": ("/", {}, 200), "get_user": ("/user", auth, 200)}  # fmt: skip
                results: dict[str, list[float]] = {k: [] for k in kinds}
                for round_ in range(6):
                    for kind, (path, headers, status) in kinds.items():
                        before = cpu_seconds(server.pid)
                        for _ in range(args.requests):
                            assert client.get(path, headers=headers).status_code == status
                        if round_:  # the first round warms up
                            results[kind].append((cpu_seconds(server.pid) - before) / args.requests * 1e6)
        finally:
            server.terminate()
            server.wait(10)
    medians = {k: round(statistics.median(v), 1) for k, v in results.items()}
    print(json.dumps({**{f"server_{k}_cpu_us": v for k, v in medians.items()},
                      "full_over_poll": round(medians["full_200"] / medians["poll_304"], 2),
                      "rounds": {k: [round(x) for x in v] for k, v in results.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()
