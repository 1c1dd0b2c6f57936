"""Typed results and inputs, as the service's HTTP API (docs/api.md) writes them.

Unknown fields are ignored, so answers of a newer service still decode.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

FINAL_STATUSES = frozenset({"finished", "error", "canceled"})


class FileInfo(msgspec.Struct, frozen=True):
    path: str  # relative to the user's root; folders end in "/"
    type: Literal["file", "directory"]
    size: str  # human-readable ("3.4 MB"), "" for folders

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"


class FileHTTPRequest(msgspec.Struct, frozen=True):
    """A request to send next, as it is, to move the bytes (to S3 directly when the service uses it)."""

    method: Literal["get", "post"]
    url: str
    headers: dict[str, str] = {}
    data: dict[str, str] = {}


class Application(msgspec.Struct, frozen=True):
    application: str
    version: str
    entrypoint: str


class FilesDown(msgspec.Struct, frozen=True):
    config_id: str | None = None
    data_ids: list[str] = []
    artifact_ids: list[str] = []


class Attributes(msgspec.Struct, frozen=True):
    files_down: FilesDown = FilesDown()
    env_vars: dict[str, str] = {}


class Hardware(msgspec.Struct, frozen=True):
    cpu_cores: int | None = None
    memory: int | None = None
    gpu_model: str | None = None
    gpu_archi: str | None = None
    gpu_mem: int | None = None


class JobCreate(msgspec.Struct, frozen=True, omit_defaults=True):
    job_name: str
    application: Application
    attributes: Attributes = Attributes()
    environment: str | None = None
    priority: int = 0
    hardware: Hardware | None = None


class Job(msgspec.Struct, frozen=True):
    id: int
    job_name: str
    status: str  # queued, pulled, preprocessing, running, postprocessing, finished, error (and canceled)
    application: Application
    attributes: Attributes = Attributes()
    user_id: str = ""
    user_email: str | None = None
    environment: str | None = None
    priority: int = 0
    hardware: Hardware | None = None
    date_created: str | None = None
    date_started: str | None = None
    date_finished: str | None = None
    runtime_details: str | None = None
    paths_out: dict[str, str] = {}
    dispatch: dict[str, Any] | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class JobEvent(msgspec.Struct, frozen=True):
    """One entry of a job's history (`GET /jobs/{id}/events`): its creation, each status update from
    the workers (`ignored` when it changed nothing), each hand-over attempt, its cancel."""

    id: int
    job_id: int
    at: str
    kind: str  # created, status, dispatch, cancel, delete
    seq: int = 0
    status: str | None = None
    details: str | None = None
    ignored: bool = False


class User(msgspec.Struct, frozen=True):
    email: str
    groups: list[str] = []


class TransferSummary(msgspec.Struct):
    """What an upload or download did: files and bytes moved, and those skipped as already complete."""

    files_total: int = 0
    files_transferred: int = 0
    files_skipped: int = 0
    bytes_total: int = 0
    bytes_transferred: int = 0
    bytes_skipped: int = 0
