"""The framework's ceilings: a bare Litestar app on uvicorn, run exactly as `decode-userapi serve`
runs it (same `uvicorn.run` arguments, same event loop and HTTP parser choice, one process), with
no middleware, no dependencies, no database.

    GET /       a constant (the service's welcome string)
    GET /jobs   the 100 jobs of --jobs-file (a saved answer of the service's GET /jobs?limit=100),
                held in memory as decoded JSON and encoded by Litestar (msgspec) on every request

Usage: python bare_app.py --port PORT [--log-level warning] [--jobs-file FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, MediaType, get

WELCOME = msgspec.json.encode("Welcome to the DECODE OpenCloud User-facing API")


@get("/", media_type=MediaType.JSON)
async def welcome() -> bytes:
    return WELCOME


JOBS: list[dict[str, Any]] = []


@get("/jobs")
async def jobs() -> list[dict[str, Any]]:
    return JOBS


app = Litestar(route_handlers=[welcome, jobs], openapi_config=None)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--jobs-file")
    args = parser.parse_args()
    if args.jobs_file:
        JOBS.extend(json.loads(Path(args.jobs_file).read_text()))
    # The arguments of decode_userapi.entrypoints.cli._serve for one worker.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=30,
    )
