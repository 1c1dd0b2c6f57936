"""Processes the benchmark starts, and what /proc says about them (CPU time, resident memory)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":", 1)
            out[name] = int(value.split()[0])
    return out


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (writing 5 to clear_refs, Linux >= 4.0); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread; with VmHWM reset at the start,
    the peak is the larger of the kernel's high-water mark and the highest sample."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline_kib = memory_kib(pid)["VmRSS"]
        self.max_sample_kib = self.baseline_kib
        self.hwm_reset = reset_peak_rss(pid)
        self.peak_kib = self.baseline_kib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.max_sample_kib = max(self.max_sample_kib, memory_kib(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            hwm = memory_kib(self.pid)["VmHWM"] if self.hwm_reset else 0
        except (OSError, KeyError):
            hwm = 0
        self.peak_kib = max(self.max_sample_kib, hwm)

    @property
    def growth_mib(self) -> float:
        return (self.peak_kib - self.baseline_kib) / 1024


class Processes:
    """Every long-running process the benchmark starts, so all of them are stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], *, cpu: int | None, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start `argv` (pinned to `cpu` with taskset, which execs it: the pid is the program's)."""
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        finally:
            log.close()
        self.running.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 35.0) -> int | None:
        """SIGTERM, wait up to `timeout` (the service's graceful shutdown), then SIGKILL."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.running = [(n, p) for n, p in self.running if p is not process]
        return process.returncode

    def stop_all(self) -> None:
        for _, process in reversed(list(self.running)):
            self.stop(process, timeout=10.0)


def wait_http_ok(url: str, process: subprocess.Popen[bytes] | None, timeout: float,
                 interval: float = 0.005) -> float:
    """Poll GET `url` until it answers 200; the seconds waited. Raises if the process exits or on timeout."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode} before answering")
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            conn.request("GET", parts.path or "/")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(interval)


def _machine_busy_ticks() -> int:
    """user + nice + system time of all cores (irq, softirq, iowait and steal left out)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return int(fields[0]) + int(fields[1]) + int(fields[2])


def _cpu_by_owner(own_session: int) -> tuple[int, int, dict[int, tuple[str, int]]]:
    """Ticks (own + reaped children's) of this session's processes, of PostgreSQL's, and of every
    other process by pid (name, own ticks)."""
    ours = postgres = 0
    others: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        own = int(fields[11]) + int(fields[12])
        ticks = own + int(fields[13]) + int(fields[14])
        if int(fields[3]) == own_session:
            ours += ticks
        elif comm.startswith("postgres"):
            postgres += ticks
        else:  # own time only: a shell reaping a finished test run would show it all at once
            others[int(entry)] = (comm, own)
    return ours, postgres, others


class MachineLoad:
    """Who used the CPUs over an interval, in % of one core: this benchmark's processes (its
    session: the service, wrk, curl, the fake, this script), PostgreSQL, and everything else
    ("foreign": other people's work on the machine, and the kernel's, which makes the numbers noisy)."""

    def __init__(self) -> None:
        self.session = os.getsid(0)
        self.ours = self.postgres = self.foreign = 0.0
        self.top_foreign: list[tuple[str, float]] = []
        self._t0 = time.monotonic()
        self._busy0 = _machine_busy_ticks()
        self._ours0, self._pg0, self._others0 = _cpu_by_owner(self.session)

    def stop(self) -> MachineLoad:
        elapsed = max(time.monotonic() - self._t0, 1e-6) * CLK_TCK
        ours, postgres, others = _cpu_by_owner(self.session)
        busy = _machine_busy_ticks() - self._busy0
        self.ours = 100 * (ours - self._ours0) / elapsed
        self.postgres = 100 * (postgres - self._pg0) / elapsed
        self.foreign = max(0.0, 100 * busy / elapsed - self.ours - self.postgres)
        by_name: dict[str, float] = {}
        for pid, (comm, ticks) in others.items():
            delta = ticks - self._others0.get(pid, (comm, 0))[1]
            if delta > 0:
                by_name[comm] = by_name.get(comm, 0.0) + 100 * delta / elapsed
        self.top_foreign = sorted(by_name.items(), key=lambda item: -item[1])[:3]
        return self

    def describe_foreign(self) -> str:
        top = ", ".join(f"{name} {share:.0f}%" for name, share in self.top_foreign if share >= 1)
        return f"{self.foreign:.0f}% of a core" + (f" ({top})" if top else "")
