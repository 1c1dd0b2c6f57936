"""No blocking file-system call on the event loop (issue 6: "no sync I/O on the event loop").

While a workload of every kind of request runs (uploads, listings, downloads, a folder as a zip,
renames, deletes, jobs and their status updates), the `os` functions the storage and the service
use are wrapped: a call made on a thread that is running an event loop is recorded, wherever it
comes from. Worker threads, where blocking calls belong, run no loop. This catches a blocking call
however fast the disk is, unlike timing the loop's callbacks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.harness import stacks
from tests.integration.test_http_jobs import job_body, put_inputs, status

pytestmark = stacks("local-sqlite", "local-postgres", "s3-postgres")

WATCHED = ("open", "read", "write", "stat", "lstat", "fstat", "scandir", "listdir", "replace", "rename",
           "unlink", "rmdir", "mkdir", "makedirs", "fsync")


# Library code allowed to touch the disk on the loop: asyncpg reads ~/.pgpass and looks for client
# certificates while opening a connection, once per pooled connection (the pool is fixed-size).
ALLOWED = ("asyncpg/connect_utils.py",)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def blocking_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The blocking calls made on an event loop while the test runs, each with where it came from."""
    found: list[str] = []

    def watch(module: Any, name: str) -> None:
        original: Callable[..., Any] = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _on_event_loop():
                frames = traceback.StackSummary.extract(traceback.walk_stack(None), limit=8, lookup_lines=False)
                if any(f.filename.endswith(ALLOWED) for f in frames):
                    return original(*args, **kwargs)
                where = " <- ".join(f"{f.name} ({f.filename.rsplit('/', 2)[-1]}:{f.lineno})" for f in frames[1:])
                found.append(f"{module.__name__}.{name}{args[:1]!r} on the event loop, from: {where}")
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for name in WATCHED:
        watch(os, name)
    watch(shutil, "rmtree")
    return found


async def test_no_blocking_file_system_calls_on_the_event_loop(client, alice, blocking_calls, fake_workerfacing):
    big = os.urandom(1 << 20) * 4  # 4 MiB (the tests allow 5): many chunks through every streaming path
    h = alice.headers
    await put_inputs(client, alice)
    blocking_calls.clear()  # only what requests do from here on

    assert (await client.post("/files/data/run/upload", headers=h, files={"file": ("a.bin", big)})).status_code == 201
    assert (await client.post("/files/data/run/sub/upload", headers=h, files={"file": ("b.txt", b"b")})).status_code == 201
    assert (await client.post("/files/data/empty/", headers=h)).status_code == 201
    assert (await client.get("/files/data/?recursive=true", headers=h)).status_code == 200
    assert (await client.get("/files/data/run/", headers=h)).status_code == 200
    download = await client.get("/files/data/run/a.bin/download", headers=h)
    assert download.status_code == 200 and download.content == big
    archive = await client.get("/files/data/run/download", headers=h)
    assert archive.status_code == 200 and len(archive.content) > len(big)
    moved = await client.put("/files/data/run/sub/b.txt", headers=h, json={"path": "data/run/c.txt"})
    assert moved.status_code == 200, moved.text
    assert (await client.delete("/files/data/run/c.txt", headers=h)).status_code == 204

    job = (await client.post("/jobs", headers=h, json=job_body("loop"))).json()
    assert (await status(client, job["id"], "running", "epoch 1")).status_code == 200
    assert (await client.get("/jobs", headers=h)).status_code == 200
    assert (await client.get(f"/jobs/{job['id']}", headers=h)).status_code == 200
    assert (await client.delete(f"/jobs/{job['id']}", headers=h)).status_code == 204
    assert (await client.delete("/files/data/run/", headers=h)).status_code == 204

    assert blocking_calls == [], "\n\n".join(blocking_calls)
