"""A fast fake worker-facing API for the benchmark: answers `POST /_jobs` with 201 at once.

A bare asyncio HTTP/1.1 server (keep-alive, Content-Length or chunked bodies), no framework, so it
costs the load core as little as possible. It checks `x-api-key`, and counts what it received by
`meta.job_id` and by `meta.idempotency_key`:

    GET  /_stats   {"posts": n, "accepted": n, "rejected": n, "bad_key": n,
                    "job_ids": {id: deliveries}, "idempotency_keys": n, "duplicate_keys": n}
    GET  /         200 (the service's readiness probe pings the worker-facing API)

Usage: python fake_workerfacing.py --port PORT --api-key KEY
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import Counter

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


class Stats:
    def __init__(self) -> None:
        self.posts = 0
        self.accepted = 0
        self.rejected = 0
        self.bad_key = 0
        self.job_ids: Counter[int] = Counter()
        self.keys: Counter[str] = Counter()

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "posts": self.posts,
                "accepted": self.accepted,
                "rejected": self.rejected,
                "bad_key": self.bad_key,
                "job_ids": {str(k): v for k, v in self.job_ids.items()},
                "idempotency_keys": len(self.keys),
                "duplicate_keys": sum(1 for v in self.keys.values() if v > 1),
            }
        ).encode()


def _response(status: int, reason: str, body: bytes = b"{}") -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        total = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise ValueError("body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        raise ValueError("body too large")
    return await reader.readexactly(length) if length else b""


def serve(port: int, api_key: str) -> None:
    stats = Stats()

    def handle_post_jobs(headers: dict[str, str], body: bytes) -> bytes:
        stats.posts += 1
        if headers.get("x-api-key") != api_key:
            stats.bad_key += 1
            return _response(401, "Unauthorized", b'{"detail":"bad x-api-key"}')
        try:
            meta = json.loads(body)["job"]["meta"]
            job_id = int(meta["job_id"])
            key = str(meta.get("idempotency_key", f"job-{job_id}"))
        except (ValueError, KeyError, TypeError):
            stats.rejected += 1
            return _response(422, "Unprocessable Entity", b'{"detail":"no job.meta.job_id"}')
        stats.accepted += 1
        stats.job_ids[job_id] += 1
        stats.keys[key] += 1
        return _response(201, "Created", b'{"id":%d}' % job_id)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if len(head) > MAX_HEAD:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await _read_body(reader, headers)
                path = target.split("?", 1)[0]
                if method == "POST" and path == "/_jobs":
                    out = handle_post_jobs(headers, body)
                elif method == "GET" and path == "/_stats":
                    out = _response(200, "OK", stats.as_json())
                elif method in ("GET", "HEAD") and path == "/":
                    out = _response(200, "OK", b'"fake worker-facing API"')
                else:
                    out = _response(404, "Not Found", b'{"detail":"not found"}')
                writer.write(out)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ValueError, asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(connection, "127.0.0.1", port, backlog=1024)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"fake worker-facing API on http://127.0.0.1:{port}", flush=True)
        async with server:
            await stop.wait()

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    serve(args.port, args.api_key)
