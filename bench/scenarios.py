"""The scenarios: each checks the service's answer once, measures, and returns one table row.

Every scenario gets the running `bench.Bench` (service, users, settings, helpers). Load comes from
the core this script runs on (wrk, curl); the service's CPU and memory are read from /proc.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from pyspy import Profiler
from proc import RssSampler, cpu_seconds

if TYPE_CHECKING:
    from bench import Bench

WRK_DIR = Path(__file__).with_name("wrk")
MiB = 1 << 20
# A row whose p99 is more than this many times its p50 says so ("TAIL"): with every connection
# served in turn, p99 stays within a small multiple of p50; beyond it some requests wait on others.
TAIL_LIMIT = 4.0


@dataclass
class Row:
    name: str
    target: str = ""
    original: str = ""
    rps: float | None = None
    mean_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms: float | None = None
    mib_s: float | None = None
    seconds: float | None = None
    rss_mib: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the scenario could not run


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    cpu_ms: float | None
    threads: list[dict[str, Any]]

    def notes(self) -> list[str]:
        out = []
        if self.non_2xx:
            out.append(f"{self.non_2xx} non-2xx answers")
        if self.socket_errors:
            out.append(f"{self.socket_errors} socket errors/timeouts")
        if self.p50_ms and self.p99_ms > TAIL_LIMIT * self.p50_ms:
            out.append(f"TAIL: p99 {self.p99_ms / self.p50_ms:.1f} × p50 (max {self.max_ms:,.0f} ms)")
        return out


def run_wrk(b: Bench, name: str, path: str, *, seconds: float, port: int | None = None, pid: int | None = None,
            profile_pid: int | None = None, lua: str | None = None, env: dict[str, str] | None = None, headers: tuple[str, ...] = ()) -> WrkResult:
    """wrk on the load core: 1 thread, `b.connections` connections, `seconds` long. With `pid`, the
    CPU that process spent during the run, per completed request."""
    script = b.tmp / f"wrk-{name}.lua"
    script.write_text((WRK_DIR / "common.lua").read_text() + ("\n" + (WRK_DIR / lua).read_text() if lua else ""))
    out = b.tmp / f"wrk-{name}.json"
    out.unlink(missing_ok=True)
    argv = ["taskset", "-c", str(b.load_cpu), "wrk", "-t1", f"-c{b.connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(script)]
    for header in headers:
        argv += ["-H", header]
    argv.append(f"http://127.0.0.1:{port or b.service.port}{path}")
    before = cpu_seconds(pid) if pid else 0.0
    with Profiler(b.profile_dir, name, pid or profile_pid, b.load_cpu):
        done = subprocess.run(argv, env={**b.base_env, **(env or {}), "BENCH_WRK_OUT": str(out)},
                              capture_output=True, text=True, timeout=seconds + 60)
    after = cpu_seconds(pid) if pid else 0.0
    (b.tmp / f"wrk-{name}.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk {name} failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}")
    data = json.loads(out.read_text())
    requests = int(data["requests"])
    duration = data["duration_us"] / 1e6
    errors = data["errors"]
    return WrkResult(
        requests=requests,
        seconds=duration,
        rps=requests / duration if duration else 0.0,
        mean_ms=data["latency_us"]["mean"] / 1000,
        p50_ms=data["latency_us"]["p50"] / 1000,
        p99_ms=data["latency_us"]["p99"] / 1000,
        max_ms=data["latency_us"]["max"] / 1000,
        non_2xx=int(errors["status"]),
        socket_errors=int(errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]),
        cpu_ms=(after - before) * 1000 / requests if pid and requests else None,
        threads=data["threads"],
    )


def wrk_row(row: Row, result: WrkResult) -> Row:
    row.rps, row.mean_ms, row.p99_ms, row.cpu_ms = result.rps, result.mean_ms, result.p99_ms, result.cpu_ms
    row.p50_ms = result.p50_ms
    row.notes += result.notes()
    return row


def load_scenario(b: Bench, name: str, path: str, row: Row, **kwargs: Any) -> Row:
    """Warm up, then measure the service at `path`."""
    if b.warmup:
        run_wrk(b, f"{name}-warmup", path, seconds=b.warmup, **kwargs)
    return wrk_row(row, run_wrk(b, name, path, seconds=b.seconds, pid=b.service.pid, **kwargs))


def _get(b: Bench, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=b.service.url, timeout=30) as client:
        return client.get(path, headers=headers, **kwargs)


def _expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{what}: HTTP {response.status_code}, expected {status}: {response.text[:300]}")
    return response.json() if response.content else None


# -- request scenarios --------------------------------------------------------------------------


def welcome(b: Bench) -> Row:
    """GET /: the service's constant answer, through its middleware (compare with the bare app)."""
    _expect(_get(b, "/"), 200, "GET /")
    return load_scenario(b, "welcome", "/", Row("GET / (constant, through the service)", "—", "—"))


def list_jobs(b: Bench) -> Row:
    user = b.users["jobs"]
    path = "/jobs?limit=100"
    jobs = _expect(_get(b, path, user.token), 200, f"GET {path}")
    row = Row(f"GET /jobs?limit=100 of a user with {b.n_jobs:,} jobs", "≥ 2,000 req/s; ≤ 0.5 ms CPU", "78 req/s; 12.9 ms")
    if len(jobs) != 100:
        row.notes.append(f"WRONG ANSWER: {len(jobs)} jobs, expected 100")
    dates = [job["date_created"] for job in jobs]
    if dates != sorted(dates, reverse=True):
        row.notes.append("WRONG ANSWER: not newest first")
    return load_scenario(b, "list-jobs", path, row, headers=(f"Authorization: Bearer {user.token}",))


def poll_jobs(b: Bench) -> Row:
    """GET /jobs?limit=100 with the ETag of the last answer: what a page or script waiting for a job
    sends while nothing changes (304, no job read or encoded). Compare with `list_jobs`."""
    user = b.users["jobs"]
    path = "/jobs?limit=100"
    tag = _get(b, path, user.token).headers.get("etag", "")
    row = Row("GET /jobs?limit=100, If-None-Match current (304)", "≥ 5× the full answer's req/s", "—")
    with httpx.Client(base_url=b.service.url, timeout=30) as client:
        polled = client.get(path, headers={"Authorization": f"Bearer {user.token}", "If-None-Match": tag})
    if not tag or polled.status_code != 304 or polled.content:
        row.notes.append(f"WRONG ANSWER: HTTP {polled.status_code}, ETag {tag!r}, {len(polled.content)} bytes")
    return load_scenario(b, "poll-jobs", path, row, headers=(f"Authorization: Bearer {user.token}", f"If-None-Match: {tag}"))


def status_updates(b: Bench) -> Row:
    ids = b.users["jobs"].job_ids
    with httpx.Client(base_url=b.service.url, timeout=30) as client:
        response = client.put("/_job_status", headers={"x-api-key": b.api_key},
                              json={"job_id": ids[0], "status": "running", "runtime_details": None})
    answer = _expect(response, 200, "PUT /_job_status")
    row = Row("PUT /_job_status (running keep-alives, 1,000 jobs)", "≥ 2,000 req/s", "458 req/s; 1.9 ms")
    if answer != "running":  # the job's status, as a bare JSON string
        row.notes.append(f"WRONG ANSWER: {answer}")
    return load_scenario(b, "status", "/_job_status", row, lua="status.lua",
                         env={"BENCH_JOB_IDS": ",".join(map(str, ids)), "BENCH_API_KEY": b.api_key})


def recursive_listing(b: Bench) -> Row:
    user = b.users["files"]
    path = "/files/data/?recursive=true"
    entries = _expect(_get(b, path, user.token), 200, f"GET {path}")
    files = sum(1 for entry in entries if entry["type"] == "file")
    row = Row(f"GET /files/data/?recursive=true ({b.n_files:,}-file tree)", "≥ 150 req/s", "8.9 req/s; 113 ms")
    if files != b.n_files:
        row.notes.append(f"WRONG ANSWER: {files} files listed, expected {b.n_files}")
    row.notes.append(f"{len(entries):,} entries, {len(_get(b, path, user.token).content) / 1024:.0f} KiB")
    return load_scenario(b, "listing", path, row, headers=(f"Authorization: Bearer {user.token}",))


def job_submission(b: Bench) -> Row:
    """wrk POSTs uniquely named jobs; then every job is traced: its answer, its row, its delivery."""
    user = b.users["submit"]
    run = f"s{secrets.token_hex(3)}"
    row = Row("POST /jobs (fast fake worker-facing API)", "≥ 1,000 req/s; 0 lost, 0 phantom", "244 req/s")
    pid = b.service.pid
    cpu_before = cpu_seconds(pid)
    result = run_wrk(b, "submit", "/jobs", seconds=b.seconds, lua="submit.lua", profile_pid=pid,
                     env={"BENCH_TOKEN": user.token, "BENCH_RUN": run})
    stopped = time.monotonic()

    # Let the dispatcher deliver what was accepted: until every row of this run is sent (or failed)
    # and the fake holds every sent one, at most `b.drain_limit` seconds.
    while True:
        rows = b.db_jobs(user.name)
        stats = b.fake_stats()
        delivered = {int(k): v for k, v in stats["job_ids"].items()}
        run_rows = {r["job_name"]: r for r in rows if r["job_name"].startswith(run + "-")}
        undelivered = [r for r in run_rows.values() if r["id"] not in delivered and r["dispatch_status"] != "failed"]
        if not undelivered:
            break
        if time.monotonic() - stopped > b.drain_limit:
            row.notes.append(f"{len(undelivered)} jobs still undelivered after {b.drain_limit:.0f} s")
            break
        time.sleep(0.2)
    drain = time.monotonic() - stopped
    cpu_after = cpu_seconds(pid)

    # Who got which answer (the service echoes X-Request-ID = the job name).
    ok: dict[str, int | None] = {}
    refused: dict[str, int] = {}
    sent: set[str] = set()
    statuses: dict[str, int] = {}
    for tid, thread in enumerate(result.threads, start=1):
        sent.update(f"{run}-t{tid}-{k}" for k in range(1, int(thread["sent"]) + 1))
        for status, count in (thread["statuses"] or {}).items():
            statuses[status] = statuses.get(status, 0) + int(count)
        for answer in thread["answers"]:
            first, name = answer.split(" ", 1)
            if first.startswith("-"):
                refused[name] = int(first[1:])
            else:
                ok[name] = int(first) if first.isdigit() else None
        for sample in thread["samples"]:
            if f"sample refusal: {sample[:200]}" not in row.notes:
                row.notes.append(f"sample refusal: {sample[:200]}")
    unanswered = sent - ok.keys() - refused.keys()
    all_ids = b.db_all_job_ids()
    ok_ids = {i for i in ok.values() if i is not None}

    lost_no_row = [n for n in ok if n not in run_rows]
    wrong_id = [n for n, i in ok.items() if n in run_rows and run_rows[n]["id"] != i]
    lost_undelivered = sorted(i for i in ok_ids if i not in delivered)
    phantom_rows = [n for n in run_rows if n in refused or n not in sent]
    cut = [n for n in run_rows if n in unanswered]
    cut_ids = {run_rows[n]["id"] for n in cut}
    run_ids = {r["id"] for r in run_rows.values()}
    phantom_deliveries = sorted(
        i for i in delivered
        if i not in all_ids or (i in run_ids and i not in ok_ids and i not in cut_ids)
    )
    duplicates = sorted(i for i in run_ids if delivered.get(i, 0) > 1)
    failed = [n for n, r in run_rows.items() if r["dispatch_status"] == "failed"]
    lost = len(lost_no_row) + len(lost_undelivered)
    phantom = len(phantom_rows) + len(phantom_deliveries)

    row.rps, row.mean_ms, row.p50_ms, row.p99_ms = result.rps, result.mean_ms, result.p50_ms, result.p99_ms
    created = statuses.get("201", 0)
    row.cpu_ms = (cpu_after - cpu_before) * 1000 / created if created else None
    row.notes += result.notes()
    row.notes.insert(0, f"{created:,} × 201; lost {lost}, phantom {phantom}")
    others = {k: v for k, v in statuses.items() if k != "201"}
    if others:
        row.notes.append(f"other answers: {others}")
    row.notes.append(f"all delivered {drain:.1f} s after wrk stopped; CPU/req includes delivery")
    if cut:
        row.notes.append(f"{len(cut)} in flight when wrk stopped were recorded (and delivered), not counted as phantom")
    if duplicates:
        row.notes.append(f"{len(duplicates)} jobs delivered more than once (at-least-once)")
    if failed:
        row.notes.append(f"{len(failed)} deliveries failed")
    if stats["bad_key"] or stats["rejected"]:
        row.notes.append(f"fake refused {stats['bad_key']} (bad key) + {stats['rejected']} (bad body)")
    if wrong_id:
        row.notes.append(f"WRONG ANSWER: {len(wrong_id)} 201s name another id than the row")
    detail = {
        "run": run, "sent": len(sent), "answered_201": len(ok), "refused": len(refused), "unanswered": len(unanswered),
        "rows": len(run_rows), "lost_no_row": lost_no_row[:20], "lost_undelivered": lost_undelivered[:20],
        "phantom_rows": phantom_rows[:20], "phantom_deliveries": phantom_deliveries[:20], "cut": len(cut),
        "duplicates": duplicates[:20], "failed": failed[:20], "statuses": statuses, "drain_seconds": drain,
    }
    (b.tmp / "submission.json").write_text(json.dumps(detail, indent=1))
    b.details["job submission"] = detail
    return row


# -- file scenarios -----------------------------------------------------------------------------


def _curl(b: Bench, args: list[str], timeout: float) -> list[str]:
    argv = ["taskset", "-c", str(b.load_cpu), "curl", "-sS", "--max-time", str(int(timeout)), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
    if done.returncode != 0:
        raise RuntimeError(f"curl failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return done.stdout.split()


def upload(b: Bench) -> Row:
    user = b.users["big"]
    source = b.upload_source
    size = source.stat().st_size
    url = f"{b.service.url}/files/data/big/upload"
    response = b.tmp / "upload-response.json"
    row = Row(f"direct upload, {size / MiB:,.0f} MiB (multipart, curl)", "≥ 600 MiB/s; RSS < +50 MiB", "256 MiB/s; +3 MiB")
    cpu_before = cpu_seconds(b.service.pid)
    with RssSampler(b.service.pid) as rss, Profiler(b.profile_dir, "upload", b.service.pid, b.load_cpu):
        code, total, sent = _curl(b, [
            "-o", str(response), "-w", "%{http_code} %{time_total} %{size_upload}", "-H", "Expect:",
            "-H", f"Authorization: Bearer {user.token}",
            "-F", f"file=@{source};filename=upload.bin;type=application/octet-stream", url,
        ], timeout=300)
    cpu = cpu_seconds(b.service.pid) - cpu_before
    if code != "201":
        raise RuntimeError(f"upload: HTTP {code}: {response.read_text()[:300]}")
    seconds = float(total)
    row.seconds, row.mib_s, row.rss_mib = seconds, size / MiB / seconds, rss.growth_mib
    row.notes.append(f"server CPU {cpu:.2f} s")
    stored = b.user_root("big") / "data" / "big" / "upload.bin"
    info = json.loads(response.read_text())
    if not stored.is_file() or stored.stat().st_size != size:
        row.notes.append(f"WRONG ANSWER: stored file {stored} missing or of the wrong size")
    elif b.crc_of_file(stored) != b.upload_crc:
        row.notes.append("WRONG ANSWER: the stored bytes differ from the uploaded ones")
    else:
        row.notes.append(f"stored file identical (CRC-32); answer {info.get('path')} {info.get('size')}")
    if not rss.hwm_reset:
        row.notes.append("peak RSS from 10 ms samples (VmHWM reset refused)")
    return row


def _first_body_byte(b: Bench, path: str, token: str, timeout: float = 60.0) -> float:
    """Seconds from sending GET `path` to the first byte of its body; then the connection is dropped."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", b.service.port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        received = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("the connection closed before the body")
            received += chunk
            head, sep, body = received.partition(b"\r\n\r\n")
            if sep:
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"download: {head.splitlines()[0].decode(errors='replace')}")
                # chunked: the body's first byte is the first chunk-size line
                if body:
                    return time.perf_counter() - started


def zip_download(b: Bench) -> Row:
    user = b.users["big"]
    path = f"/files/{b.zip_folder}/download"
    target = b.tmp / "download.zip"
    row = Row(f"folder as zip, {b.zip_mib:,} MiB in {len(b.zip_members)} files (curl)",
              "≥ 800 MiB/s; RSS < +64 MiB; 1st byte ≤ 1 s", "32 MiB/s; +4,081 MiB; 21.6 s")
    first_byte = _first_body_byte(b, path, user.token)
    time.sleep(0.5)  # let the abandoned stream be torn down before measuring memory
    # Timed with the body thrown away: writing 1 GiB to this VM's disk limits the client (curl into
    # a file ran at 320-790 MiB/s whatever the server did); the archive is then fetched again into
    # a file and checked.
    cpu_before = cpu_seconds(b.service.pid)
    with RssSampler(b.service.pid) as rss, Profiler(b.profile_dir, "zip", b.service.pid, b.load_cpu):
        code, headers_at, total, size = _curl(b, [
            "-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer} %{time_total} %{size_download}",
            "-H", f"Authorization: Bearer {user.token}", f"{b.service.url}{path}",
        ], timeout=300)
    cpu = cpu_seconds(b.service.pid) - cpu_before
    if code != "200":
        raise RuntimeError(f"zip download: HTTP {code}")
    seconds = float(total)
    row.seconds, row.mib_s, row.rss_mib = seconds, int(size) / MiB / seconds, rss.growth_mib
    row.notes.append(f"first body byte {first_byte:.3f} s (separate request; curl's headers at {float(headers_at):.3f} s)")
    row.notes.append(f"server CPU {cpu:.2f} s; zip {int(size) / MiB:,.1f} MiB, timed into /dev/null")
    (code,) = _curl(b, ["-o", str(target), "-w", "%{http_code}", "-H", f"Authorization: Bearer {user.token}",
                        f"{b.service.url}{path}"], timeout=300)
    if code != "200":
        raise RuntimeError(f"zip download (to check it): HTTP {code}")
    try:
        with zipfile.ZipFile(target) as archive:
            bad = archive.testzip()
            members = {info.filename: info for info in archive.infolist()}
    except zipfile.BadZipFile as e:
        row.notes.append(f"WRONG ANSWER: not a zip ({e})")
        return row
    expected = {name: (big.size, crc) for name, (big, crc) in b.zip_members.items()}
    got = {name: (info.file_size, info.CRC) for name, info in members.items() if not name.endswith("/")}
    if bad is not None:
        row.notes.append(f"WRONG ANSWER: testzip: {bad} is corrupt")
    elif got != expected:
        row.notes.append(f"WRONG ANSWER: members {sorted(got)} differ from the folder {sorted(expected)}")
    else:
        methods = {info.compress_type for info in members.values()}
        kind = "stored" if methods == {zipfile.ZIP_STORED} else f"compression {sorted(methods)}"
        row.notes.append(f"zip valid (testzip, names, sizes, CRCs; {kind})")
    target.unlink(missing_ok=True)
    return row


def cold_start(b: Bench) -> Row:
    """Stop the service, then start it `b.cold_starts` times: process start to the first 200 on GET /."""
    row = Row(f"cold start to first answer (median of {b.cold_starts})", "< 1.5 s", "0.75 s")
    b.service.stop()
    times = []
    for _ in range(b.cold_starts):
        times.append(b.service.start())
        b.service.stop()
    times.sort()
    row.seconds = times[len(times) // 2]
    row.notes.append("all: " + ", ".join(f"{t:.2f}" for t in times) + " s (schema at head, warm page cache)")
    return row


SCENARIOS = [welcome, list_jobs, poll_jobs, status_updates, job_submission, recursive_listing, upload, zip_download, cold_start]
