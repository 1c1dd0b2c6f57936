"""`decode-userapi worker-sim`: a stand-in for the worker-facing API, for the embedded default.

It plays the worker-facing API's side of CONTRACT "Talking to the worker-facing API", with no
containers and no GPU: `POST /_jobs` (checked `x-api-key`) accepts a job, then a background task
drives it `pulled → preprocessing → running → postprocessing → finished` through the user API's
`PUT /_job_status`, one step every `step_seconds`. Before `finished` it reads the job's inputs (the
`files_down` paths; a missing one ends the job in `error`) and writes what a worker would upload,
under `paths_upload[<kind>]/<the entrypoint's files_up folder>/`:
`log` → `job.log`, `artifact` → `model.pt` (a DECODE training's `artifact/<job>/model/model.pt`),
`output` → `result.csv`.

Local storage only: `paths_upload` and `files_down` must be absolute paths under the user API's
`USER_DATA_ROOT_PATH` (read from the same environment and `.env`), as the real worker-facing API
requires; `s3://` URIs are refused with 422. Both programs read `INTERNAL_API_KEY_SECRET`: put it in a
`.env` file in the directory both are started from (or export it in both shells).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import structlog
from litestar import Litestar, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody
from litestar.status_codes import HTTP_201_CREATED

log = structlog.get_logger(__name__)

STEPS = ("pulled", "preprocessing", "running", "postprocessing")
# What the simulated worker writes per `files_up` kind: a file name and its content.
PRODUCTS = {
    "log": ("job.log", None),  # the job's own log lines
    "artifact": ("model.pt", b"simulated model weights\n"),
    "output": ("result.csv", b"frame,x,y,photons\n0,12.5,8.25,1500\n"),
}


class _Handler(msgspec.Struct):
    entrypoint: str
    image_name: str
    image_version: str
    files_down: dict[str, str] = {}
    files_up: dict[str, str] = {}


class _Meta(msgspec.Struct):
    job_id: int
    date_created: str = ""
    idempotency_key: str | None = None

    @property
    def delivery(self) -> str:
        """What every delivery of one job shares (a job id alone repeats after a database reset)."""
        return self.idempotency_key or f"{self.job_id}@{self.date_created}"


class _Job(msgspec.Struct):
    handler: _Handler
    meta: _Meta


class JobRequest(msgspec.Struct):
    """The part of a `POST /_jobs` body the simulator uses; the rest is accepted as it is."""

    job: _Job
    paths_upload: dict[str, str]


class SimulatorError(HTTPException):
    status_code = 422


@dataclass
class SimulatorConfig:
    api_key: str
    userapi_url: str = "http://127.0.0.1:8000"
    data_root: str = "decode-userapi-data/user_data"  # USER_DATA_ROOT_PATH
    step_seconds: float = 1.0


@dataclass
class Simulator:
    """The jobs seen (a redelivery, same `meta.idempotency_key`, is acknowledged, not run twice) and their runs."""

    config: SimulatorConfig
    root: Path = field(init=False)
    seen: dict[str, int] = field(default_factory=dict)  # delivery key → queue id
    finished: dict[int, str] = field(default_factory=dict)  # job id → last status sent
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    client: httpx.AsyncClient | None = None
    _queue_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.root = Path(self.config.data_root).resolve()

    def local_path(self, uri: str, what: str) -> Path:
        if "://" in uri:
            raise SimulatorError(
                detail=f"{what}: {uri!r} is not a local path; the simulator serves local storage only "
                "(FILESYSTEM=local)"
            )
        path = Path(uri)
        if not path.is_absolute() or path.resolve() != path or not path.is_relative_to(self.root):
            raise SimulatorError(detail=f"{what}: {uri!r} is not an absolute path under {self.root}")
        return path

    def accept(self, request: JobRequest) -> dict[str, Any]:
        job_id, delivery = request.job.meta.job_id, request.job.meta.delivery
        for kind, uri in request.paths_upload.items():
            self.local_path(uri, f"paths_upload.{kind}")
        for name, uri in request.job.handler.files_down.items():
            self.local_path(uri, f"files_down[{name!r}]")
        if delivery in self.seen:
            log.info("sim.redelivered", job_id=job_id)
            return {"id": self.seen[delivery], "job_id": job_id, "status": "queued"}
        self.seen[delivery] = queue_id = next(self._queue_ids)
        task = asyncio.create_task(self.run(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        log.info("sim.accepted", job_id=job_id, queue_id=queue_id)
        return {"id": queue_id, "job_id": job_id, "status": "queued"}

    async def report(self, job_id: int, status: str, details: str | None = None) -> bool:
        """Send one status; False when the job is gone (404) or the user API cannot be reached."""
        assert self.client is not None
        body = {"job_id": job_id, "status": status, "runtime_details": details}
        for attempt in range(5):
            try:
                r = await self.client.put("/_job_status", json=body)
            except httpx.HTTPError as e:
                log.warning("sim.status_retry", job_id=job_id, status=status, error=str(e))
            else:
                if r.status_code == 200:
                    self.finished[job_id] = status
                    log.info("sim.status", job_id=job_id, status=status)
                    return True
                if r.status_code == 404:
                    log.info("sim.job_gone", job_id=job_id)
                    return False
                log.warning("sim.status_refused", job_id=job_id, status=status, code=r.status_code, body=r.text[:200])
                if r.status_code < 500:
                    return False
            await asyncio.sleep(min(0.2 * 2**attempt, 5))
        return False

    async def run(self, request: JobRequest) -> None:
        job_id = request.job.meta.job_id
        handler = request.job.handler
        lines = [f"simulated {handler.image_name} {handler.image_version} {handler.entrypoint}, job {job_id}"]
        try:
            for status in STEPS:
                await asyncio.sleep(self.config.step_seconds)
                details = None
                if status == "preprocessing":
                    size = self.read_inputs(handler.files_down)
                    details = f"{len(handler.files_down)} input files, {size} bytes"
                    lines.append(details)
                lines.append(status)
                if not await self.report(job_id, status, details):
                    return
            written = self.write_products(request, lines)
            await asyncio.sleep(self.config.step_seconds)
            await self.report(job_id, "finished", f"wrote {', '.join(written) or 'nothing'}")
        except (OSError, ValueError) as e:
            log.warning("sim.job_failed", job_id=job_id, error=str(e))
            await self.report(job_id, "error", f"simulated worker: {e}")

    def read_inputs(self, files_down: dict[str, str]) -> int:
        size = 0
        for name, uri in files_down.items():
            path = self.local_path(uri, name)
            if not path.is_file():
                raise ValueError(f"input {name} is missing ({uri})")
            size += path.stat().st_size
        return size

    def write_products(self, request: JobRequest, lines: list[str]) -> list[str]:
        written = []
        for kind, folder in request.job.handler.files_up.items():
            if kind not in request.paths_upload or kind not in PRODUCTS:
                continue
            name, content = PRODUCTS[kind]
            target = self.local_path(request.paths_upload[kind], kind) / folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if content is not None else ("\n".join(lines) + "\n").encode())
            written.append(str(target.relative_to(self.root)))
        return written


def create_simulator_app(config: SimulatorConfig) -> Litestar:
    """The worker-facing API stand-in, as an ASGI app (`decode-userapi worker-sim` serves it)."""
    sim = Simulator(config)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        sim.client = httpx.AsyncClient(
            base_url=config.userapi_url.rstrip("/"), headers={"x-api-key": config.api_key}, timeout=10
        )
        try:
            yield
        finally:
            for task in list(sim.tasks):
                task.cancel()
            await asyncio.gather(*sim.tasks, return_exceptions=True)
            await sim.client.aclose()

    @get("/", sync_to_thread=False)
    def index() -> dict[str, Any]:
        return {"service": "decode-userapi worker simulator", "jobs": len(sim.seen), "running": len(sim.tasks)}

    def check_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        given = connection.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), config.api_key.encode()):
            raise NotAuthorizedException(detail="a valid x-api-key header is needed")

    @post("/_jobs", status_code=HTTP_201_CREATED, sync_to_thread=False, guards=[check_key])
    def submit(data: JSONBody[JobRequest]) -> dict[str, Any]:
        return sim.accept(data)

    app = Litestar(route_handlers=[index, submit], lifespan=[lifespan], openapi_config=None)
    app.state.simulator = sim
    return app
