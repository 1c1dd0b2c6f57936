"""Optional sampling profiles of the service during the load scenarios (`BENCH_PROFILE=1`).

py-spy (`pip install py-spy` into the Python that runs the bench, or on PATH) samples the service
process from the load core while wrk drives it, without pausing it (`--nonblocking`). Each scenario
leaves `<name>.collapsed` (folded stacks, for flamegraph.pl or speedscope) and `<name>.md`: where the
samples were, by module group (our code, SQLAlchemy, Litestar, ...) and by function (self and total).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

GROUPS = (  # first match wins; matched against "function (file)"
    ("decode_userapi", "our code"),
    ("sqlalchemy", "SQLAlchemy"),
    ("asyncpg", "asyncpg"),
    ("greenlet", "SQLAlchemy"),
    ("litestar", "Litestar"),
    ("uvicorn", "uvicorn"),
    ("httptools", "uvicorn"),
    ("uvloop", "event loop"),
    ("asyncio", "event loop"),
    ("msgspec", "msgspec"),
    ("structlog", "structlog"),
    ("prometheus_client", "prometheus_client"),
    ("jwt", "PyJWT"),
    ("multipart", "python-multipart"),
    ("zipfile", "zipfile"),
)


IDLE_LEAVES = ("Condition.wait (threading.py", "Queue.get (queue.py")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """`with Profiler(directory, name, pid, cpu):` records while the block runs (no-op without a
    directory or without py-spy)."""

    def __init__(self, directory: Path | None, name: str, pid: int | None, cpu: int) -> None:
        self.directory, self.name, self.pid, self.cpu = directory, name, pid, cpu
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def output(self) -> Path:
        assert self.directory is not None
        return self.directory / f"{self.name}.collapsed"

    def __enter__(self) -> Profiler:
        tool = py_spy()
        if self.directory is None or self.pid is None or tool is None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = ["taskset", "-c", str(self.cpu), tool, "record", "--pid", str(self.pid), "--nonblocking",
                "--rate", "200", "--format", "raw", "--output", str(self.output)]
        if os.environ.get("BENCH_PYSPY_GIL") == "1":  # only samples holding the GIL: CPU, not waiting
            argv.append("--gil")
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return
        if self.output.exists():
            (self.directory / f"{self.name}.md").write_text(summarize(self.output, self.name))  # type: ignore[operator]
        else:
            print(f"[bench] py-spy failed for {self.name}: {err.decode(errors='replace')[-300:]}", file=sys.stderr)


def _group(frame: str) -> str:
    for needle, group in GROUPS:
        if needle in frame:
            return group
    return "other"


def summarize(path: Path, title: str, top: int = 25) -> str:
    """A markdown summary of folded stacks: share of samples by group (self time) and by function."""
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    samples = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames or any(leaf in frames[-1] for leaf in IDLE_LEAVES):
            idle += count  # a pool thread waiting for work: py-spy cannot always tell it is idle
            continue
        samples += count
        leaf = frames[-1]
        self_time[leaf] += count
        groups[_group(leaf)] += count
        for frame in set(frames):
            total_time[frame] += count

    def pct(n: int) -> str:
        return f"{100 * n / samples:.1f}%" if samples else "-"

    lines = [f"# py-spy: {title}", "",
             f"{samples:,} samples (200 Hz; idle threads excluded, and {idle:,} more of threads waiting for work)", "",
             "## Self time by library", "", "| library | share |", "|---|---:|"]
    lines += [f"| {g} | {pct(n)} |" for g, n in groups.most_common()]
    lines += ["", "## Self time by function", "", "| function | share |", "|---|---:|"]
    lines += [f"| `{f}` | {pct(n)} |" for f, n in self_time.most_common(top)]
    ours = [(f, n) for f, n in total_time.most_common() if "decode_userapi" in f][:top]
    lines += ["", "## Our functions, total time (with what they call)", "", "| function | share |", "|---|---:|"]
    lines += [f"| `{f}` | {pct(n)} |" for f, n in ours]
    return "\n".join(lines) + "\n"


def profile_dir(results: Path) -> Path | None:
    return results.parent / "profiles" if os.environ.get("BENCH_PROFILE") == "1" else None


if __name__ == "__main__":  # python bench/pyspy.py FILE.collapsed: print the summary
    print(summarize(Path(sys.argv[1]), Path(sys.argv[1]).stem))
