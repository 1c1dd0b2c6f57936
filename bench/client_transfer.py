"""Issue 14's benchmark row: folder upload and download through `decode-cloud` against the same
transfers sent directly with curl, and the client's memory.

    python bench/client_transfer.py [--gib 2] [--files 200] [--parallel 4]

`decode-userapi serve` (the embedded default: SQLite, local disk, built-in identity) runs in a child
process with a scratch data directory under $TMPDIR. A folder of `--files` files, `--gib` GiB in all,
is generated there (a random 1 MiB block, rotated differently for each file). Then, each timed on the
wall clock:

- direct upload: `curl -F file=@…` to `POST /files/data/direct/upload`, `--parallel` curls at a time
  (xargs -P), the way a script without the client would;
- client upload: `decode-cloud upload FOLDER data/client` (`--parallel` files at a time, the `/url` flow);
- direct download: `curl -o` of every file's `GET …/download`, `--parallel` at a time;
- client download: `decode-cloud download data/client DEST`;

in `--rounds` rounds (default 3; who goes first alternates), reporting medians: this 2-core machine
is shared, and single runs vary by 2x.

Downloads are written to disk in both cases. The client's peak RSS (`/usr/bin/time -f %M`) is
compared with its peak RSS for a one-file upload: the growth a 2 GiB folder costs. The table goes to
stdout and `bench/results/client_transfer.md`; exit status 1 when a rate is under 80 % of the direct
one or the growth reaches 64 MiB. Everything is deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORD = "bench-password-1"
USER = "bench@example.org"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_folder(root: Path, files: int, total: int) -> None:
    block = os.urandom(1 << 20)
    size = total // files
    root.mkdir(parents=True)
    for i in range(files):
        shift = (i * 7919) % len(block)
        rotated = block[shift:] + block[:shift]
        with (root / f"frame{i:04d}.bin").open("wb") as f:
            left = size
            while left:
                chunk = rotated[: min(left, len(rotated))]
                f.write(chunk)
                left -= len(chunk)


def timed(command: list[str], **kwargs) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of a command run under /usr/bin/time."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True, **kwargs)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {result.stderr[-2000:]}")
    return elapsed, int(result.stderr.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four transfers; medians are reported")
    args = parser.parse_args()
    total = int(args.gib * (1 << 30))
    scratch = Path(tempfile.mkdtemp(prefix="decode-client-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MAX_UPLOAD_BYTES": str(8 << 30), "LOG_LEVEL": "WARNING", "INTERNAL_API_KEY_SECRET": "bench"}
    server = subprocess.Popen(
        [BIN / "decode-userapi", "serve", "--port", str(port), "--log-level", "warning"], cwd=scratch, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    rows: list[tuple[str, str, str]] = []
    all_times = ""
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        httpx.post(f"{url}/user", data={"username": USER, "password": PASSWORD}).raise_for_status()
        token = httpx.post(f"{url}/token", data={"username": USER, "password": PASSWORD}).json()["id_token"]
        auth = f"authorization: Bearer {token}"
        source = scratch / "frames"
        print(f"generating {args.files} files, {args.gib} GiB in {source}", file=sys.stderr)
        make_folder(source, args.files, total)
        size = total // args.files
        moved = size * args.files
        names = sorted(p.name for p in source.iterdir())
        cli_env = {**os.environ, "DECODE_CLOUD_URL": url, "DECODE_CLOUD_TOKEN": token}
        cli = [str(BIN / "decode-cloud"), "--parallel", str(args.parallel), "--json"]

        def xargs(template: str) -> list[str]:
            return ["sh", "-c", f"ls {source} | xargs -P {args.parallel} -I NAME {template}"]

        direct_dest, client_dest = scratch / "direct-down", scratch / "client-down"
        small = scratch / "small.txt"
        small.write_bytes(b"x" * 1000)
        _, base_rss = timed([*cli, "upload", str(small), "data/small/"], env=cli_env)
        times: dict[str, list[float]] = {"direct_up": [], "client_up": [], "direct_down": [], "client_down": []}
        rss = {"up": 0, "down": 0}

        def direct_upload() -> None:
            times["direct_up"].append(
                timed(xargs(f"curl -sS -f -o /dev/null -H '{auth}' -F file=@{source}/NAME {url}/files/data/direct/upload"))[0]
            )

        def client_upload() -> None:
            elapsed, peak = timed([*cli, "upload", str(source), "data/client"], env=cli_env)
            times["client_up"].append(elapsed)
            rss["up"] = max(rss["up"], peak)

        def direct_download() -> None:
            direct_dest.mkdir()
            times["direct_down"].append(
                timed(xargs(f"curl -sS -f -H '{auth}' -o {direct_dest}/NAME {url}/files/data/direct/NAME/download"))[0]
            )
            shutil.rmtree(direct_dest)

        def client_download() -> None:
            elapsed, peak = timed([*cli, "download", "data/client", str(client_dest)], env=cli_env)
            times["client_down"].append(elapsed)
            rss["down"] = max(rss["down"], peak)
            assert sorted(p.name for p in client_dest.iterdir()) == names
            assert all(p.stat().st_size == size for p in client_dest.iterdir())
            shutil.rmtree(client_dest)

        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
            for folder in ("data/direct", "data/client"):
                httpx.delete(f"{url}/files/{folder}", headers={"authorization": f"Bearer {token}"}).raise_for_status()
            # who goes first alternates, so neither always meets the other's disk write-back
            ups, downs = (direct_upload, client_upload), (direct_download, client_download)
            for step in (ups if round_ % 2 == 0 else ups[::-1]) + (downs if round_ % 2 == 0 else downs[::-1]):
                step()
        direct_up, client_up = statistics.median(times["direct_up"]), statistics.median(times["client_up"])
        direct_down, client_down = statistics.median(times["direct_down"]), statistics.median(times["client_down"])
        up_rss, down_rss = rss["up"], rss["down"]

        mib = 1 << 20
        up_ratio, down_ratio = client_up and direct_up / client_up, client_down and direct_down / client_down
        growth = (max(up_rss, down_rss) - base_rss) / 1024
        rows = [
            ("upload, curl -F (direct)", f"{moved / direct_up / mib:,.0f} MiB/s", f"{direct_up:.1f} s"),
            ("upload, decode-cloud", f"{moved / client_up / mib:,.0f} MiB/s ({up_ratio:.0%} of direct)", f"{client_up:.1f} s"),
            ("download, curl -o (direct)", f"{moved / direct_down / mib:,.0f} MiB/s", f"{direct_down:.1f} s"),
            ("download, decode-cloud", f"{moved / client_down / mib:,.0f} MiB/s ({down_ratio:.0%} of direct)", f"{client_down:.1f} s"),
            ("client peak RSS: 1 kB file / upload / download",
             f"{base_rss / 1024:.0f} / {up_rss / 1024:.0f} / {down_rss / 1024:.0f} MiB", f"growth {growth:+.0f} MiB (limit +64)"),
        ]
        ok = up_ratio >= 0.8 and down_ratio >= 0.8 and growth < 64
        all_times = "; ".join(f"{k} " + " ".join(f"{v:.1f}" for v in vs) for k, vs in times.items())
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
    header = (
        f"### decode-cloud vs direct transfers, {args.files} files, {args.gib:g} GiB, {args.parallel} at a time "
        f"({dt.datetime.now(dt.UTC).date()}, {platform.node()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"medians of {args.rounds} rounds, walls: {all_times})\n\n"
        "| what | rate (median) | wall (median) |\n|---|---|---|\n"
    )
    table = header + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    print(table)
    out = ROOT / "bench" / "results" / "client_transfer.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
