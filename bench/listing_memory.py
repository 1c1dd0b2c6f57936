"""How much memory a recursive listing of a large tree costs the service (issue 11: bounded work).

Creates a tree of FILES files (local storage, in a temporary directory), starts the service
(`decode-userapi serve`, SQLite, built-in identity), signs up, and lists the tree with
`GET /files/?recursive=true`, reading the answer as it streams. Reports the service's resident memory
before and at its peak during the listing (target: growth < 64 MiB), and the time to the first byte
and to the last. Nothing is pinned to a core; run it on a quiet machine.

    .venv/bin/python bench/listing_memory.py                 # 200,000 files, 1,000 a folder
    .venv/bin/python bench/listing_memory.py --per-folder 200000   # all in one folder
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc import Processes, RssSampler, free_port, memory_kib, wait_http_ok  # noqa: E402

PASSWORD = "bench-password-1"
TARGET_MIB = 64


def make_tree(root: Path, files: int, per_folder: int) -> float:
    started = time.perf_counter()
    for index in range(files):
        folder = root / f"d{index // per_folder:05d}"
        if index % per_folder == 0:
            folder.mkdir(parents=True)
        os.close(os.open(folder / f"frame_{index:07d}.tif", os.O_CREAT | os.O_WRONLY, 0o644))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--per-folder", type=int, default=1000)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="listing-memory-"))
    processes = Processes(scratch)
    try:
        user_root = scratch / "user_data"
        made = make_tree(user_root / "bench" / "data" / "tree", args.files, args.per_folder)
        make_tree(user_root / "bench" / "config" / "warm", 20, 10)  # for the warm-up
        folders = -(-args.files // args.per_folder)
        print(f"tree: {args.files:,} files in {folders:,} folders, made in {made:.1f} s")

        port = free_port()
        env = {
            **os.environ,
            "DECODE_DATA_DIR": str(scratch),
            "USER_DATA_ROOT_PATH": str(user_root),
            "DATABASE_URL": f"sqlite:///{scratch}/userapi.db",
            "AUTH": "1",
            "TOKEN_SIGNING_KEY": "bench-signing-key-0123456789abcdef0123456789",
            "INTERNAL_API_KEY_SECRET": "bench-internal-key",
        }
        argv = [sys.executable, "-m", "decode_userapi.entrypoints.cli", "serve", "--port", str(port),
                "--log-level", "warning"]
        service = processes.start("service", argv, cpu=None, env=env, cwd=scratch)
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/", service, timeout=60)

        with httpx.Client(base_url=base, timeout=600) as http:
            assert http.post("/user", data={"username": "bench", "password": PASSWORD}).status_code == 201
            token = http.post("/token", data={"username": "bench", "password": PASSWORD}).json()["id_token"]
            auth = {"Authorization": f"Bearer {token}"}
            for _ in range(3):  # warm up the listing's code paths on a small folder, not the tree
                assert http.get("/files/config/warm/?recursive=true", headers=auth).status_code == 200
                assert http.get("/files/", headers=auth).status_code == 200

            for run in (1, 2):
                before = memory_kib(service.pid)["VmRSS"]
                received = 0
                first_byte = None
                started = time.perf_counter()
                with RssSampler(service.pid) as rss:
                    with http.stream("GET", "/files/?recursive=true", headers=auth) as r:
                        assert r.status_code == 200, r.read()
                        chunks = []
                        for chunk in r.iter_bytes():
                            if first_byte is None:
                                first_byte = time.perf_counter() - started
                            received += len(chunk)
                            chunks.append(chunk)
                elapsed = time.perf_counter() - started
                entries = len(httpx.Response(200, content=b"".join(chunks)).json())
                del chunks
                expected = args.files + folders + 1 + 5 + 23  # files, folders, tree/, the roots, warm-up
                assert entries == expected, (entries, expected)
                print(
                    f"run {run}: {entries:,} entries, {received / 1024**2:.1f} MiB of JSON; "
                    f"first byte {first_byte:.2f} s, last {elapsed:.2f} s; service RSS {before / 1024:.0f} MiB "
                    f"before, peak {rss.peak_kib / 1024:.0f} MiB: growth {rss.growth_mib:.1f} MiB "
                    f"(target < {TARGET_MIB} MiB{'' if rss.hwm_reset else '; peak sampled every 10 ms'})"
                )
        processes.stop(service)
        return 0
    finally:
        processes.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
