"""A fake worker-facing API: a plain ASGI app served by uvicorn on 127.0.0.1 in a background thread.

It checks `x-api-key`, validates `POST /_jobs` bodies strictly against CONTRACT "Talking to the
worker-facing API" and records the valid ones. `mode` and `fail_next` simulate outages.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from datetime import datetime
from typing import Any, Literal

import httpx
import msgspec

from tests.fakes.server import LocalAsgiServer, read_body

Mode = Literal["up", "down", "error", "slow"]
MODE_STATUS = {"down": 503, "error": 500}


# The payload, as CONTRACT describes it. Unknown fields and wrong types are refused (422).
class _App(msgspec.Struct, forbid_unknown_fields=True):
    cmd: list[str]
    env: dict[str, str]


class _Handler(msgspec.Struct, forbid_unknown_fields=True):
    image_url: str
    image_name: str
    image_version: str
    entrypoint: str
    files_down: dict[str, str]
    files_up: dict[str, str]


class _Meta(msgspec.Struct, forbid_unknown_fields=True):
    job_id: int
    date_created: str
    idempotency_key: str  # **beyond**: the same for every delivery of one job

    def __post_init__(self) -> None:
        try:
            datetime.fromisoformat(self.date_created)
        except ValueError:
            raise ValueError(f"date_created {self.date_created!r} is not an ISO 8601 date") from None


class _Job(msgspec.Struct, forbid_unknown_fields=True):
    app: _App
    handler: _Handler
    meta: _Meta
    hardware: dict[str, Any]


class _PathsUpload(msgspec.Struct, forbid_unknown_fields=True):
    output: str
    log: str
    artifact: str


class WorkerJobRequest(msgspec.Struct, forbid_unknown_fields=True):
    job: _Job
    environment: Literal["cloud", "local"] | None
    group: str | None
    priority: int
    paths_upload: _PathsUpload


def validate_job_request(body: bytes) -> str | None:
    """None if `body` is a valid `POST /_jobs` payload, else the reason it is not."""
    try:
        msgspec.json.decode(body, type=WorkerJobRequest)
    except msgspec.DecodeError as e:  # ValidationError included; msgspec names the path, e.g. `$.job.meta`
        return str(e)
    return None


class FakeWorkerFacingApi(LocalAsgiServer):
    """Start with `start()`/`stop()` or `with FakeWorkerFacingApi(key) as fake:`; `url` is its base URL."""

    name = "fake worker-facing API"

    mode: Mode
    delay: float  # seconds, in "slow" mode

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        self._requests = 0
        self._fail_next: list[int] = []
        self._epoch = 0  # bumped by reset(): requests from before it record nothing
        self._queue_ids = itertools.count(1)
        self.reset()

    # --- what tests look at and change ---

    @property
    def received(self) -> list[dict[str, Any]]:
        """The valid job payloads accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._received)

    @property
    def requests(self) -> int:
        """How many `POST /_jobs` arrived, whatever was answered."""
        with self._lock:
            return self._requests

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` job submissions with `status`, whatever the mode."""
        with self._lock:
            self._fail_next.extend([status] * count)

    def reset(self) -> None:
        """Back to a fresh state: up, nothing received; requests still in flight will record nothing."""
        with self._lock:
            self.mode, self.delay = "up", 1.0
            self._received.clear()
            self._requests = 0
            self._fail_next.clear()
            self._epoch += 1

    # --- the ASGI app ---

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        status, answer = await self._handle(scope, body)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    async def _handle(self, scope: dict[str, Any], body: bytes) -> tuple[int, Any]:
        if scope["path"] != "/_jobs":
            return 404, {"detail": "Not Found"}
        if scope["method"] != "POST":
            return 405, {"detail": "Method Not Allowed"}
        with self._lock:
            self._requests += 1
            epoch = self._epoch
        if dict(scope["headers"]).get(b"x-api-key", b"").decode("latin-1") != self.api_key:
            return 401, {"detail": "missing or wrong x-api-key"}
        with self._lock:
            failure = self._fail_next.pop(0) if self._fail_next else MODE_STATUS.get(self.mode)
        if failure is not None:
            return failure, {"detail": f"fake worker-facing API answering {failure}"}
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        reason = validate_job_request(body)
        if reason is not None:
            return 422, {"detail": reason}
        payload = json.loads(body)
        with self._lock:
            if epoch == self._epoch:
                self._received.append(payload)
            queue_id = next(self._queue_ids)
        return 201, {"id": queue_id, "job_id": payload["job"]["meta"]["job_id"], "status": "queued"}




async def send_status(
    api_base_url: str,
    api_key: str,
    job_id: int,
    status: str,
    runtime_details: str | None = None,
    *,
    client: httpx.AsyncClient | None = None,
) -> httpx.Response:
    """`PUT {api}/_job_status` as the real worker-facing API does. Pass `client` (e.g. Litestar's
    `AsyncTestClient`, with `api_base_url=""`) to call an app in-process instead of over the network."""
    request = {
        "url": f"{api_base_url.rstrip('/')}/_job_status",
        "headers": {"x-api-key": api_key},
        "json": {"job_id": job_id, "status": status, "runtime_details": runtime_details},
    }
    if client is not None:
        return await client.put(**request)
    async with httpx.AsyncClient() as own:
        return await own.put(**request)
