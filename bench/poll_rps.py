"""Requests/s on one core of `GET /jobs?limit=100` and `GET /jobs/{id}`, full answers against polls
answered 304 (issue #13: the poll must reach at least 5 times the full answer's requests/s).

    PYTHONPATH=<checkout>/src:<checkout>/bench python bench/poll_rps.py
        [--backend postgresql|sqlite|both] [--jobs 1000] [--seconds 5] [--rounds 3] [--profile DIR]

For each backend: seeds a user with `jobs` jobs (as bench/poll_server_cpu.py: straight into the
store, delivered), starts `decode-userapi serve` pinned to core 0 (`taskset -c 0`, logs at WARNING,
built-in identity), and drives it with wrk pinned to core 1 (1 thread, 32 connections, bench/wrk/
common.lua) for 1 s of warm-up then `seconds`, interleaving the kinds `rounds` times. Prints a
markdown table (median req/s and server CPU per request over the rounds, from /proc) and a JSON
line. With `--profile DIR`, py-spy (beside this Python, or on PATH) samples the server during the
last round of each kind: DIR/<backend>-<kind>.collapsed and .md (bench/pyspy.py's summary).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from poll_cpu import PASSWORD, USER, scratch  # beside this script
from poll_server_cpu import seed
from proc import CLK_TCK, free_port, wait_http_ok
from pyspy import Profiler

WRK_COMMON = Path(__file__).with_name("wrk") / "common.lua"
CONNECTIONS = 32


def cpu(pid: int) -> tuple[float, float]:
    """(user, system) seconds of the process, all threads."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def wrk(port: int, path: str, headers: dict[str, str], seconds: int, out: Path) -> dict[str, float]:
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK_COMMON)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    done = subprocess.run(argv, env={**os.environ, "BENCH_WRK_OUT": str(out)}, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr[-500:]}")
    data = json.loads(out.read_text())
    errors = data["errors"]
    if errors["status"] or errors["connect"] or errors["read"] or errors["timeout"]:
        raise RuntimeError(f"wrk {path}: errors {errors}")
    return {"requests": data["requests"], "rps": data["requests"] / (data["duration_us"] / 1e6)}


def run_backend(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, float]]:
    if backend == "postgresql":
        url = asyncio.run(scratch(args.url))
    else:
        url = f"sqlite:///{tmp}/poll.db"
    asyncio.run(seed(url, args.jobs))
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "AUTH": "1", "DATA_DIR": str(tmp), "USER_DATA_ROOT_PATH": f"{tmp}/u",
           "TOKEN_SIGNING_KEY": "poll-cpu-signing-key-0123456789abcdef0123", "INTERNAL_API_KEY_SECRET": "k",
           "WORKERFACING_API_URL": "http://127.0.0.1:9", "LOG_LEVEL": "WARNING"}  # fmt: skip
    argv = ["taskset", "-c", "0", sys.executable, "-m", "decode_userapi.entrypoints.cli", "serve", "--port", str(port),
            "--log-level", "warning"]  # fmt: skip
    if os.environ.get("POLL_SERVER"):  # another server script (taking the port), e.g. for an ablation
        argv = ["taskset", "-c", "0", sys.executable, os.environ["POLL_SERVER"], str(port)]
    server = subprocess.Popen(argv, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[str, dict[str, list[float]]] = {}
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/", server, 60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            client.post("/user", data={"username": USER, "password": PASSWORD})
            token = client.post("/token", data={"username": USER, "password": PASSWORD}).json()["id_token"]
            auth = {"Authorization": f"Bearer {token}"}
            full = client.get("/jobs?limit=100", headers=auth)
            assert full.status_code == 200 and len(full.json()) == 100, full.status_code
            job_id = full.json()[0]["id"]
            one = client.get(f"/jobs/{job_id}", headers=auth)
            assert one.status_code == 200
            kinds = {
                "list_full_200": ("/jobs?limit=100", auth, 200),
                "list_poll_304": ("/jobs?limit=100", {**auth, "If-None-Match": full.headers["etag"]}, 304),
                "job_full_200": (f"/jobs/{job_id}", auth, 200),
                "job_poll_304": (f"/jobs/{job_id}", {**auth, "If-None-Match": one.headers["etag"]}, 304),
                "root_200": ("/", {}, 200),
            }
            kinds = {k: v for k, v in kinds.items() if not args.only or k in args.only.split(",")}
            for path, headers, status in kinds.values():  # each answers as it should, before the load
                answer = client.get(path, headers=headers)
                assert answer.status_code == status and (status != 304 or not answer.content), (path, answer.status_code)
        for name, (path, headers, _) in kinds.items():
            wrk(port, path, headers, 1, tmp / "warmup.json")
            results[name] = {"rps": [], "cpu_us": [], "sys_us": []}
        for round_ in range(args.rounds):
            for name, (path, headers, _) in kinds.items():
                last = round_ == args.rounds - 1
                profile = Path(args.profile) if args.profile and last else None
                before = cpu(server.pid)
                with Profiler(profile, f"{backend}-{name}", server.pid, 1):
                    measured = wrk(port, path, headers, args.seconds, tmp / "wrk.json")
                results[name]["rps"].append(measured["rps"])
                after = cpu(server.pid)
                results[name]["cpu_us"].append((sum(after) - sum(before)) / measured["requests"] * 1e6)
                results[name]["sys_us"].append((after[1] - before[1]) / measured["requests"] * 1e6)
    finally:
        server.terminate()
        server.wait(30)
    return {name: {k: statistics.median(v) for k, v in values.items()} | {"rounds_rps": values["rps"]}  # type: ignore[misc]
            for name, values in results.items()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--backend", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated kinds to measure (default: all)")
    parser.add_argument("--profile", help="a directory for py-spy profiles of the last round")
    args = parser.parse_args()
    backends = ("postgresql", "sqlite") if args.backend == "both" else (args.backend,)
    everything = {}
    lines = ["| backend | request | req/s | server CPU µs/req (of it system) | poll ÷ full (req/s) |", "|---|---|---:|---:|---:|"]
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            found = run_backend(backend, args, Path(tmp))
        everything[backend] = found
        for name, values in found.items():
            full = {"list_poll_304": "list_full_200", "job_poll_304": "job_full_200"}.get(name)
            ratio = f"{values['rps'] / found[full]['rps']:.2f}×" if full in found else ""
            lines.append(f"| {backend} | {name} | {values['rps']:,.0f} | {values['cpu_us']:,.0f} ({values['sys_us']:,.0f}) | {ratio} |")
    print("\n".join(lines))
    print(json.dumps(everything))


if __name__ == "__main__":
    main()
