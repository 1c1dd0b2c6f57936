"""The decode-userapi benchmark: start everything, seed through the API, measure, print the table.

Run it through `bench/run` (which installs wrk and curl, picks the Python, and pins this script to
the load core); see bench/README.md for the settings (`BENCH_*` environment variables).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

import pyspy
import scenarios
import seed
from proc import MachineLoad, Processes, free_port, wait_http_ok
from scenarios import MiB, Row, run_wrk

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


# Other people's CPU use (% of one core) above which a measurement is flagged as noisy.
FOREIGN_NOISE = 10.0


class TimeLimit(Exception):
    pass


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass
class User:
    name: str
    token: str = ""
    job_ids: list[int] = field(default_factory=list)


@dataclass
class Ceiling:
    name: str
    measured: str
    issue: str
    note: str = ""


class Service:
    """`decode-userapi serve` on the server core, with the benchmark's settings."""

    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        console = Path(sys.executable).parent / "decode-userapi"
        self.command = [str(console)] if console.exists() else [sys.executable, "-m", "decode_userapi.entrypoints.cli"]
        self.argv = [*self.command, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--log-level", bench.log_level]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the service is not running"
        return self.process.pid

    def start(self) -> float:
        """Start it; seconds from process start to the first 200 on GET /."""
        started = time.perf_counter()
        self.process = self.b.procs.start("service", self.argv, cpu=self.b.server_cpu, env=self.b.service_env,
                                          cwd=self.b.tmp)
        try:
            wait_http_ok(self.url + "/", self.process, timeout=60)
        except Exception:
            raise RuntimeError(f"the service did not start:\n{self.b.procs.log_tail('service')}") from None
        return time.perf_counter() - started

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            self.b.procs.stop(self.process)
            self.process = None


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.seconds = _env_float("BENCH_SECONDS", 2 if quick else 5)
        self.warmup = _env_float("BENCH_WARMUP", 1)
        self.connections = _env_int("BENCH_CONNECTIONS", 32)
        self.n_jobs = _env_int("BENCH_JOBS", 1000)
        self.n_files = _env_int("BENCH_FILES", 2000)
        self.upload_mib = _env_int("BENCH_UPLOAD_MIB", 64 if quick else 512)
        self.zip_mib = _env_int("BENCH_ZIP_MIB", 128 if quick else 1024)
        self.zip_files = _env_int("BENCH_ZIP_FILES", 8)
        self.cold_starts = _env_int("BENCH_COLD_STARTS", 3)
        self.server_cpu = _env_int("BENCH_SERVER_CPU", 0)
        self.load_cpu = _env_int("BENCH_LOAD_CPU", 1)
        self.drain_limit = _env_float("BENCH_DRAIN_SECONDS", 30)
        self.time_limit = _env_int("BENCH_TIME_LIMIT", 600)
        self.wait_quiet = _env_float("BENCH_WAIT_QUIET", 0)
        self.log_level = os.environ.get("BENCH_LOG_LEVEL") or "warning"
        self.pg_admin_url = os.environ.get("BENCH_PG_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
        self.db_name = os.environ.get("BENCH_DB") or "decode_bench"
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.db_name):
            raise SystemExit(f"BENCH_DB must be a plain lower-case identifier, not {self.db_name!r}")
        default_results = BENCH_DIR / "results" / ("quick.md" if quick else "latest.md")
        self.results = Path(os.environ.get("BENCH_RESULTS") or default_results)
        self.keep = os.environ.get("BENCH_KEEP") == "1"
        self.profile_dir = pyspy.profile_dir(self.results)

        self.tmp = Path(tempfile.mkdtemp(prefix="decode-bench-", dir=os.environ.get("BENCH_TMPDIR") or None))
        self.procs = Processes(self.tmp)
        self.base_env = dict(os.environ)
        self.api_key = secrets.token_hex(16)
        self.fake_port = free_port()
        self.fake: subprocess.Popen[bytes] | None = None
        self.db_created = False
        self.own_sessions = 0  # connections this script opened to the scratch database
        self.data_dir = self.tmp / "data"
        self.service_env = self._service_env()
        self.service = Service(self)
        self.users = {key: User(f"bench-{key}@example.org") for key in ("jobs", "submit", "files", "big")}
        self.rows: list[Row] = []
        self.ceilings: list[Ceiling] = []
        self.setup_notes: list[str] = []
        self.findings: list[str] = []
        self.details: dict[str, Any] = {}
        self.failed = False
        self.loads: list[MachineLoad] = []
        self.idle_load: MachineLoad | None = None
        self.zip_folder = "data/zipme"
        self.zip_members: dict[str, tuple[seed.BigFile, int]] = {}
        self.upload_source = self.tmp / "client" / "upload.bin"
        self.upload_crc = 0
        self.started = time.monotonic()

    # -- settings ------------------------------------------------------------------------------

    @property
    def db_url(self) -> str:
        parts = urlsplit(self.pg_admin_url)
        return urlunsplit(parts._replace(path=f"/{self.db_name}"))

    def _service_env(self) -> dict[str, str]:
        """Only the service's own settings (nothing inherited that could change them), and no .env:
        the service runs in the scratch directory."""
        env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL", "TZ") if name in os.environ}
        env.update({
            "DECODE_DATA_DIR": str(self.data_dir),
            "USER_DATA_ROOT_PATH": str(self.data_dir / "user_data"),
            "AUTH": "1",
            "FILESYSTEM": "local",
            "DATABASE_URL": self.db_url,
            "INTERNAL_API_KEY_SECRET": self.api_key,
            "WORKERFACING_API_URL": f"http://127.0.0.1:{self.fake_port}",
            "MAX_UPLOAD_BYTES": str(max(4 << 30, 2 * self.upload_mib * MiB)),
            "LOG_LEVEL": self.log_level.upper(),
            "EMAIL_SENDER_SERVICE": "",
        })
        # BENCH_SET_<NAME>=value sets the service's <NAME> (e.g. BENCH_SET_DATABASE_POOL_SIZE=32)
        self.service_overrides = {name[len("BENCH_SET_"):]: value for name, value in os.environ.items()
                                  if name.startswith("BENCH_SET_") and len(name) > len("BENCH_SET_")}
        env.update(self.service_overrides)
        return env

    def user_root(self, key: str) -> Path:
        return self.data_dir / "user_data" / self.users[key].name

    # -- helpers for the scenarios ---------------------------------------------------------------

    def _sql(self, query: str, *args: Any, admin: bool = False) -> list[dict[str, Any]]:
        if not admin:
            self.own_sessions += 1

        async def go() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.pg_admin_url if admin else self.db_url, timeout=10)
            try:
                return [dict(r) for r in await conn.fetch(query, *args)]
            finally:
                await conn.close()

        return asyncio.run(go())

    def db_jobs(self, user: str) -> list[dict[str, Any]]:
        return self._sql("SELECT id, job_name, dispatch_status FROM jobs WHERE user_id = $1", user)

    def db_all_job_ids(self) -> set[int]:
        return {r["id"] for r in self._sql("SELECT id FROM jobs")}

    def db_sessions(self) -> int | None:
        """Connections ever opened to the scratch database (PostgreSQL 14+), to see pool churn."""
        try:
            rows = self._sql("SELECT sessions FROM pg_stat_database WHERE datname = $1", self.db_name, admin=True)
            return int(rows[0]["sessions"])
        except Exception:  # noqa: BLE001 - older PostgreSQL: no such column
            return None

    def fake_stats(self) -> dict[str, Any]:
        return httpx.get(f"http://127.0.0.1:{self.fake_port}/_stats", timeout=10).json()

    @staticmethod
    def crc_of_file(path: Path) -> int:
        crc = 0
        with open(path, "rb") as f:
            while chunk := f.read(MiB):
                crc = zlib.crc32(chunk, crc)
        return crc

    def log(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    # -- phases --------------------------------------------------------------------------------

    def setup(self) -> None:
        self.log(f"scratch directory {self.tmp}")
        waited = time.monotonic()
        while True:  # with BENCH_WAIT_QUIET=N, wait up to N s for other people's work to stop
            self.idle_load = MachineLoad()
            time.sleep(2)
            self.idle_load.stop()
            if self.idle_load.foreign <= FOREIGN_NOISE or time.monotonic() - waited >= self.wait_quiet:
                break
            self.log(f"other processes use {self.idle_load.foreign:.0f}% of a core: waiting for quiet")
        if self.idle_load.foreign > FOREIGN_NOISE:
            self.log(f"warning: before the run, other processes used {self.idle_load.foreign:.0f}% of a core: "
                     "the numbers will be noisy")
        self._sql(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)", admin=True)
        self._sql(f"CREATE DATABASE {self.db_name}", admin=True)
        self.db_created = True
        self.log(f"database {self.db_name} created")
        self.fake = self.procs.start(
            "fake-workerfacing",
            [sys.executable, str(BENCH_DIR / "fake_workerfacing.py"), "--port", str(self.fake_port),
             "--api-key", self.api_key],
            cpu=self.load_cpu, cwd=self.tmp,
        )
        wait_http_ok(f"http://127.0.0.1:{self.fake_port}/", self.fake, timeout=30)
        first = self.service.start()
        self.setup_notes.append(f"first start on an empty database (schema migrations included): {first:.2f} s")
        self.log(f"service up on {self.service.url} (pid {self.service.pid}) in {first:.2f} s")

    def seed(self) -> None:
        block = os.urandom(seed.BLOCK)
        member_mib = self.zip_mib // self.zip_files
        for i in range(self.zip_files):
            big = seed.BigFile(block, offset=i * 1_000_003, size=member_mib * MiB)
            self.zip_members[f"frames{i:02d}.tif"] = (big, big.crc32())
        upload = seed.BigFile(block, offset=777_777, size=self.upload_mib * MiB)
        self.upload_source.parent.mkdir()
        upload.write_to(self.upload_source)
        self.upload_crc = upload.crc32()
        asyncio.run(asyncio.wait_for(self._seed(), 300))

        # The seeded jobs are delivered before anything is measured.
        ids = set(self.users["jobs"].job_ids)
        deadline = time.monotonic() + 60
        while not ids <= {int(k) for k in self.fake_stats()["job_ids"]}:
            if time.monotonic() > deadline:
                raise RuntimeError("the seeded jobs were not delivered to the fake worker-facing API within 60 s")
            time.sleep(0.2)
        with httpx.Client(base_url=self.service.url, timeout=30) as client:
            jobs = client.get("/jobs?limit=100", headers=seed.auth(self.users["jobs"].token)).json()
        (self.tmp / "jobs100.json").write_text(json.dumps(jobs))

    async def _seed(self) -> None:
        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        async with httpx.AsyncClient(base_url=self.service.url, timeout=60, limits=limits) as client:
            for user in self.users.values():
                user.token = await seed.register(client, user.name)
            for key in ("jobs", "submit"):
                await seed.seed_inputs(client, self.users[key].token)

            started = time.perf_counter()
            names = [f"seed-{i:05d}" for i in range(self.n_jobs)]
            self.users["jobs"].job_ids = await seed.submit_jobs(
                client, self.users["jobs"].token, names, self.connections, deadline=120)
            took = time.perf_counter() - started
            self.setup_notes.append(f"seeded {self.n_jobs:,} jobs with POST /jobs ({self.connections} at a time): "
                                    f"{took:.1f} s, {self.n_jobs / took:,.0f} jobs/s")
            self.log(self.setup_notes[-1])

            started = time.perf_counter()
            await seed.upload_tree(client, self.users["files"].token, "data/tree", self.n_files, 100,
                                   self.connections, deadline=180)
            took = time.perf_counter() - started
            self.setup_notes.append(f"seeded a {self.n_files:,}-file tree (20 folders) with uploads: {took:.1f} s, "
                                    f"{self.n_files / took:,.0f} uploads/s")
            self.log(self.setup_notes[-1])

            started = time.perf_counter()
            token = self.users["big"].token
            await seed.bounded(
                list(self.zip_members.items()),
                lambda item: seed.upload_big(client, token, self.zip_folder, item[0], item[1][0]),
                concurrency=2, deadline=240,
            )
            took = time.perf_counter() - started
            self.setup_notes.append(f"seeded the {self.zip_mib:,} MiB folder with {self.zip_files} streamed uploads "
                                    f"(httpx, 2 at a time): {took:.1f} s, {self.zip_mib / took:,.0f} MiB/s")
            self.log(self.setup_notes[-1])

    def measure_ceilings(self) -> None:
        # The framework: a bare Litestar app on the same uvicorn settings, same pinning.
        port = free_port()
        bare = self.procs.start(
            "bare-litestar",
            [sys.executable, str(BENCH_DIR / "bare_app.py"), "--port", str(port), "--log-level", self.log_level,
             "--jobs-file", str(self.tmp / "jobs100.json")],
            cpu=self.server_cpu, cwd=self.tmp, env=self.service_env,
        )
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/", bare, timeout=30)
            for name, path, label, issue in (
                ("bare", "/", "bare Litestar on uvicorn, GET / constant", "18,000 req/s"),
                ("bare-jobs", "/jobs", "bare Litestar, GET /jobs: the same 100 jobs from memory (msgspec)",
                 "8,100 req/s"),
            ):
                if self.warmup:
                    run_wrk(self, f"{name}-warmup", path, seconds=self.warmup, port=port)
                load = MachineLoad()
                result = run_wrk(self, name, path, seconds=self.seconds, port=port, pid=bare.pid)
                self.loads.append(load.stop())
                notes = [(f"mean {result.mean_ms:.2f} ms, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                          f"CPU {result.cpu_ms:.3f} ms/req"),
                         *result.notes()]
                if load.foreign > FOREIGN_NOISE:
                    notes.append(f"NOISY: other processes used {load.describe_foreign()} meanwhile")
                self.ceilings.append(Ceiling(label, f"{result.rps:,.0f} req/s", issue, "; ".join(notes)))
                self.log(f"ceiling: {label}: {result.rps:,.0f} req/s")
        finally:
            self.procs.stop(bare)

        # The disk, for the same byte counts, on the server's core.
        def timed(argv: list[str]) -> float:
            started = time.perf_counter()
            subprocess.run(["taskset", "-c", str(self.server_cpu), *argv], check=True, timeout=300,
                           capture_output=True)
            return time.perf_counter() - started

        for mib in sorted({self.upload_mib, self.zip_mib}):
            target = self.tmp / f"dd-{mib}.bin"
            seconds = timed(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={mib}", "conv=fdatasync",
                             "status=none"])
            self.ceilings.append(Ceiling(f"disk write {mib:,} MiB (dd, conv=fdatasync)",
                                         f"{mib / seconds:,.0f} MiB/s", "—", f"{seconds:.2f} s"))
            if mib == self.zip_mib:
                seconds = timed(["dd", f"if={target}", "of=/dev/null", "bs=1M", "status=none"])
                self.ceilings.append(Ceiling(f"read {mib:,} MiB (dd, from the page cache, as the service reads)",
                                             f"{mib / seconds:,.0f} MiB/s", "—", f"{seconds:.2f} s"))
            target.unlink()

        def python_ceiling(args: list[str]) -> dict[str, float]:
            done = subprocess.run(["taskset", "-c", str(self.server_cpu), sys.executable,
                                   str(BENCH_DIR / "disk.py"), *args],
                                  check=True, timeout=300, capture_output=True, text=True)
            return json.loads(done.stdout)

        copy = python_ceiling(["copy", str(self.upload_source), str(self.tmp / "copy.bin")])
        (self.tmp / "copy.bin").unlink()
        self.ceilings.append(Ceiling(f"file copy {self.upload_mib:,} MiB (shutil.copyfile, page cache, no sync)",
                                     f"{copy['bytes'] / MiB / copy['seconds']:,.0f} MiB/s", "2,470 MiB/s",
                                     f"{copy['seconds']:.2f} s"))
        zipped = python_ceiling(["zip", str(self.user_root("big") / self.zip_folder)])
        self.ceilings.append(Ceiling(f"stored zip stream of the {self.zip_mib:,} MiB folder (zipfile, to a null sink)",
                                     f"{zipped['bytes'] / MiB / zipped['seconds']:,.0f} MiB/s", "2,880 MiB/s",
                                     f"{zipped['seconds']:.2f} s"))
        self.log("ceilings measured")

    def run_scenario(self, scenario: Callable[[Bench], Row]) -> None:
        name = scenario.__name__.replace("_", " ")
        self.log(f"scenario: {name}")
        log_path = self.tmp / "service.log"
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        sessions, own = self.db_sessions(), self.own_sessions
        load = MachineLoad()
        try:
            if not self.service.alive():
                self.service.start()
            row = scenario(self)
        except Exception as e:  # the scenario could not run: say why, carry on with the next one
            self.failed = True
            traceback.print_exc()
            row = Row(name, error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300])
        if scenario is not scenarios.cold_start and not self.service.alive():
            code = self.service.process.returncode if self.service.process else None
            row.notes.append(f"SERVER DIED (exit {code})")
            self.findings.append(f"{row.name}: the service died (exit {code}); log tail:\n"
                                 + self.procs.log_tail("service", 15))
            self.service.process = None
        if log_path.exists():
            with open(log_path, "rb") as f:
                f.seek(log_offset)
                new = f.read().decode(errors="replace").splitlines()
            bad = [line for line in new if re.search(r"Traceback|\berror\b|ERROR|CRITICAL", line, re.I)]
            if bad:
                row.notes.append(f"{len(bad)} error lines in the service log")
                self.findings.append(f"{row.name}: service log:\n    " + "\n    ".join(line[:300] for line in bad[:5]))
        load.stop()
        if scenario is not scenarios.cold_start:
            row.notes.append(f"PostgreSQL {load.postgres:.0f}% of a core")
        if load.foreign > FOREIGN_NOISE:
            row.notes.append(f"NOISY: other processes used {load.describe_foreign()} meanwhile")
        self.loads.append(load)
        time.sleep(1.1)  # PostgreSQL publishes session counts within a second
        after = self.db_sessions()
        if sessions is not None and after is not None and scenario is not scenarios.cold_start:
            opened = after - sessions - (self.own_sessions - own)
            if opened > 0:
                row.notes.append(f"service opened {opened} new PostgreSQL connections")
        for note in row.notes:
            if note.startswith(("WRONG ANSWER", "TAIL")) or "non-2xx" in note:
                self.findings.append(f"{row.name}: {note}")
        self.rows.append(row)
        self.log(f"  -> {summary(row)}")

    def cleanup(self) -> None:
        signal.alarm(0)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # let the cleanup finish
            signal.signal(sig, signal.SIG_IGN)
        self.procs.stop_all()
        if self.db_created:
            try:
                self._sql(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)", admin=True)
                self.log(f"database {self.db_name} dropped")
            except Exception as e:  # noqa: BLE001
                self.log(f"could not drop database {self.db_name}: {e}")
        if self.keep:
            self.log(f"kept {self.tmp} (BENCH_KEEP=1)")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the report ----------------------------------------------------------------------------

    def header(self, command: str) -> list[str]:
        def version(name: str) -> str:
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                return "-"

        def git(*args: str) -> str:
            done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
            return done.stdout.strip() if done.returncode == 0 else ""

        commit = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--", "src", "pyproject.toml")
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor() or "unknown CPU")
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0].split(" [")[0]
        pg = self._sql("SHOW server_version", admin=True)[0]["server_version"] if self.db_created else "?"
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
        return [
            f"- command: `{command}`",
            f"- when: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; "
            f"commit {commit}" + (" with uncommitted changes in src/" if dirty else ""),
            f"- machine: {cpu}, {os.cpu_count()} cores, {mem} GiB RAM; Linux {platform.release()}",
            f"- service: `decode-userapi serve --log-level {self.log_level}` (1 process; LOG_LEVEL={self.log_level.upper()}"
            + "".join(f", {k}={v}" for k, v in sorted(self.service_overrides.items()))
            + "; other settings at their defaults"
            + ("" if "DATABASE_POOL_SIZE" in self.service_overrides else ", e.g. DATABASE_POOL_SIZE=10") + "), "
            f"pinned to core {self.server_cpu}; Python {platform.python_version()}, litestar {version('litestar')}, "
            f"uvicorn {version('uvicorn')} (loop {loop}, HTTP {parser}); PostgreSQL {pg} (not pinned), "
            "local storage in a scratch directory",
            f"- load: on core {self.load_cpu} ({wrk}, 1 thread, {self.connections} connections, "
            f"{self.seconds:g} s per scenario after {self.warmup:g} s of warm-up; curl for the file scenarios; "
            "the fake worker-facing API and this script run there too)",
            self._noise_line(),
            "- CPU ms/req: the service process's utime+stime (all threads) over the run / requests; "
            "RSS growth: peak RSS (VmHWM reset before, and 10 ms VmRSS samples) minus RSS before",
        ]

    def _noise_line(self) -> str:
        idle = f"{self.idle_load.foreign:.0f}%" if self.idle_load else "?"
        worst = max((load.foreign for load in self.loads), default=0.0)
        mean = sum(load.foreign for load in self.loads) / len(self.loads) if self.loads else 0.0
        verdict = "quiet" if max(worst, self.idle_load.foreign if self.idle_load else 0) <= FOREIGN_NOISE else "NOISY"
        return (f"- other processes on the machine ({verdict}): {idle} of a core in the 2 s before the run, "
                f"{mean:.0f}% on average during the measurements, {worst:.0f}% at worst "
                f"(rows over {FOREIGN_NOISE:.0f}% say so)")

    def report(self, command: str) -> str:
        def num(value: float | None, fmt: str) -> str:
            return "" if value is None else format(value, fmt)

        lines = ["# decode-userapi benchmark", "", *self.header(command), "", "## Scenarios", "",
                 "| scenario | req/s | mean ms | p50 ms | p99 ms | CPU ms/req | MiB/s | seconds | RSS growth MiB "
                 "| target | original | notes |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
        for r in self.rows:
            notes = f"**could not run: {r.error}**" if r.error else "; ".join(r.notes)
            lines.append(
                f"| {r.name} | {num(r.rps, ',.0f')} | {num(r.mean_ms, '.2f')} | {num(r.p50_ms, '.2f')} "
                f"| {num(r.p99_ms, '.2f')} "
                f"| {num(r.cpu_ms, '.3f')} | {num(r.mib_s, ',.0f')} | {num(r.seconds, '.2f')} "
                f"| {num(r.rss_mib, '+.1f')} | {r.target} | {r.original} | {notes.replace('|', '/')} |"
            )
        lines += ["", "## Ceilings of this machine (same run, same pinning)", "",
                  "| ceiling | measured | issue 6's machine | notes |", "|---|---:|---:|---|"]
        lines += [f"| {c.name} | {c.measured} | {c.issue} | {c.note} |" for c in self.ceilings]
        lines += ["", "## Setup", ""] + [f"- {note}" for note in self.setup_notes]
        lines.append(f"- whole run: {time.monotonic() - self.started:.0f} s")
        if self.findings:
            lines += ["", "## Findings", ""] + [f"- {f}" for f in self.findings]
        return "\n".join(lines) + "\n"


def summary(row: Row) -> str:
    if row.error:
        return f"could not run: {row.error}"
    parts = []
    if row.rps is not None:
        parts.append(f"{row.rps:,.0f} req/s, mean {row.mean_ms:.2f} ms, p50 {row.p50_ms:.2f} ms, p99 {row.p99_ms:.2f} ms")
    if row.cpu_ms is not None:
        parts.append(f"CPU {row.cpu_ms:.3f} ms/req")
    if row.mib_s is not None:
        parts.append(f"{row.mib_s:,.0f} MiB/s")
    if row.seconds is not None:
        parts.append(f"{row.seconds:.2f} s")
    if row.rss_mib is not None:
        parts.append(f"RSS {row.rss_mib:+.1f} MiB")
    return ", ".join(parts + row.notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 s per scenario, 64/128 MiB files")
    parser.add_argument("--command", default="bench/run", help="the command line to print in the report")
    args = parser.parse_args()
    bench = Bench(args.quick)

    def on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeLimit(f"the run exceeded BENCH_TIME_LIMIT={bench.time_limit} s")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(bench.time_limit + int(bench.wait_quiet))
    code = 0
    interrupted = False
    try:
        bench.setup()
        bench.seed()
        bench.measure_ceilings()
        only = {n.strip() for n in (os.environ.get("BENCH_ONLY") or "").split(",") if n.strip()}
        for scenario in scenarios.SCENARIOS:
            if not only or scenario.__name__ in only:
                bench.run_scenario(scenario)
        code = 1 if bench.failed else 0
    except TimeLimit as e:
        bench.findings.append(f"stopped: {e}")
        code = 1
    except (SystemExit, KeyboardInterrupt) as e:
        interrupted = True
        bench.findings.append("interrupted")
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
    except Exception as e:  # noqa: BLE001 - setup or seeding failed: report what there is
        traceback.print_exc()
        bench.findings.append(f"stopped: {type(e).__name__}: {e}")
        code = 1
    finally:
        try:
            text = bench.report(args.command)
        finally:
            bench.cleanup()
    print(text)
    if interrupted:
        bench.log(f"interrupted: {bench.results} left as it was")
    else:
        bench.results.parent.mkdir(parents=True, exist_ok=True)
        bench.results.write_text(text)
        bench.log(f"written to {bench.results}")
    return code


if __name__ == "__main__":
    sys.exit(main())
