"""Seeding through the service's own HTTP API (httpx, concurrently): users and tokens with the built-in
identity, small input files, jobs, a tree of small files, and large files streamed from memory."""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

PASSWORD = "bench-Password-2024"
CHUNK = 1 << 20  # 1 MiB
BLOCK = 8 << 20  # distinct random bytes behind every large file (frames barely compress: neither does this)


def job_body(name: str) -> dict[str, Any]:
    """A DECODE training job on the inputs `config/run1` and `data/run1` (see `seed_inputs`)."""
    return {
        "job_name": name,
        "application": {"application": "decode", "version": "v0_10_1", "entrypoint": "train"},
        "attributes": {"files_down": {"config_id": "run1", "data_ids": ["run1"]}},
    }


def _check(response: httpx.Response, expected: int, what: str) -> httpx.Response:
    if response.status_code != expected:
        raise RuntimeError(f"{what}: HTTP {response.status_code} (expected {expected}): {response.text[:300]}")
    return response


async def bounded(items: Iterable[T], fn: Callable[[T], Awaitable[Any]], concurrency: int, deadline: float) -> list[Any]:
    """Run `fn` over `items`, at most `concurrency` at a time, all within `deadline` seconds."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(item: T) -> Any:
        async with semaphore:
            return await fn(item)

    return await asyncio.wait_for(asyncio.gather(*(one(item) for item in items)), deadline)


async def register(client: httpx.AsyncClient, username: str) -> str:
    """Create `username` (group users) and return an ID token for it."""
    form = {"username": username, "password": PASSWORD}
    _check(await client.post("/user", data=form), 201, f"POST /user {username}")
    token = _check(await client.post("/token", data=form), 201, f"POST /token {username}").json()["id_token"]
    return str(token)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def upload_bytes(client: httpx.AsyncClient, token: str, folder: str, filename: str, data: bytes) -> dict[str, Any]:
    response = await client.post(
        f"/files/{folder}/upload", headers=auth(token), files={"file": (filename, data, "application/octet-stream")}
    )
    return _check(response, 201, f"upload {folder}/{filename}").json()


async def seed_inputs(client: httpx.AsyncClient, token: str) -> None:
    """The inputs every benchmark job names: config/run1/param.yaml and data/run1/calib.mat."""
    await upload_bytes(client, token, "config/run1", "param.yaml", b"Hardware:\n  device: cuda\n")
    await upload_bytes(client, token, "data/run1", "calib.mat", os.urandom(4096))


async def submit_jobs(client: httpx.AsyncClient, token: str, names: list[str], concurrency: int, deadline: float) -> list[int]:
    async def submit(name: str) -> int:
        response = await client.post("/jobs", headers=auth(token), json=job_body(name))
        return int(_check(response, 201, f"POST /jobs {name}").json()["id"])

    return await bounded(names, submit, concurrency, deadline)


async def upload_tree(client: httpx.AsyncClient, token: str, root: str, files: int, per_folder: int,
                      concurrency: int, deadline: float) -> None:
    """`files` small files (0.5 to 4 KiB) in folders of `per_folder` under `root`."""
    def item(i: int) -> tuple[str, str, bytes]:
        return f"{root}/d{i // per_folder:03d}", f"frame{i:05d}.tif", os.urandom(512 + (i * 37) % 3584)

    async def upload(spec: tuple[str, str, bytes]) -> None:
        await upload_bytes(client, token, *spec)

    await bounded((item(i) for i in range(files)), upload, concurrency, deadline)


@dataclass
class BigFile:
    """`size` bytes of `block` starting at `offset` and wrapping around: distinct files without
    holding them in memory. Its CRC-32 is known before any byte is sent."""

    block: bytes
    offset: int
    size: int

    def chunks(self) -> Iterable[memoryview]:
        doubled = memoryview(self.block + self.block)
        position, left = self.offset % len(self.block), self.size
        while left > 0:
            n = min(CHUNK, left)
            yield doubled[position : position + n]
            position = (position + n) % len(self.block)
            left -= n

    def crc32(self) -> int:
        crc = 0
        for chunk in self.chunks():
            crc = zlib.crc32(chunk, crc)
        return crc

    def write_to(self, path: os.PathLike[str] | str) -> None:
        with open(path, "wb") as f:
            for chunk in self.chunks():
                f.write(chunk)


def multipart_stream(filename: str, big: BigFile) -> tuple[dict[str, str], AsyncIterator[bytes]]:
    """Headers and an async body for a multipart upload of `big` as field `file`, with its exact
    Content-Length, so nothing is buffered on the client side."""
    boundary = f"bench{os.urandom(12).hex()}"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for chunk in big.chunks():
            yield bytes(chunk)
        yield tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + big.size + len(tail)),
    }
    return headers, body()


async def upload_big(client: httpx.AsyncClient, token: str, folder: str, filename: str, big: BigFile) -> float:
    """Stream `big` to `folder/filename`; the seconds it took."""
    headers, body = multipart_stream(filename, big)
    started = time.perf_counter()
    response = await client.post(f"/files/{folder}/upload", headers={**auth(token), **headers}, content=body,
                                 timeout=httpx.Timeout(120.0))
    _check(response, 201, f"upload {folder}/{filename}")
    return time.perf_counter() - started
