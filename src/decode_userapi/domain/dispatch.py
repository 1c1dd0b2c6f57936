"""The job payload for the worker-facing API (CONTRACT "Talking to the worker-facing API")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from decode_userapi.domain.applications import Entrypoint
from decode_userapi.domain.backoff import backoff_delay
from decode_userapi.domain.files import UserPath
from decode_userapi.domain.jobs import HardwareSpec, Job


class InputSelection(msgspec.Struct, frozen=True):
    """One input a job names (`base`, a file or a folder) and the files found in it."""

    mount: str  # the folder under /files in the container, from the entrypoint's files_down
    base: UserPath
    files: tuple[UserPath, ...]


def files_down_keys(selection: InputSelection) -> list[tuple[str, UserPath]]:
    """Container-relative names for each file: folders keep their inner layout, a file its name."""
    if not selection.base.is_dir:
        return [(f"{selection.mount}/{selection.base.name}", selection.base)]
    return [
        (f"{selection.mount}/{'/'.join(f.relative_to(selection.base))}", f) for f in selection.files
    ]


class RetryPolicy(msgspec.Struct, frozen=True):
    """The dispatcher's backoff (`backoff_delay`) between attempts; after `give_up_after` seconds
    a dispatch is failed."""

    base_delay: float = 1.0
    max_delay: float = 300.0
    give_up_after: float = 24 * 3600.0

    def delay(self, attempts: int, jitter: float, retry_after: float | None = None) -> float:
        """Seconds to wait after `attempts` failed tries; `jitter` in [0, 1) spreads replicas out."""
        return backoff_delay(attempts, jitter, base=self.base_delay, cap=self.max_delay, retry_after=retry_after)

    def gives_up(self, created: datetime, now: datetime) -> bool:
        return (now - created).total_seconds() >= self.give_up_after


def idempotency_key(job_id: int, date_created: datetime) -> str:
    """Stable for one job across every delivery attempt and every replica."""
    return f"decode-userapi-job-{job_id}-{int(date_created.timestamp() * 1_000_000)}"


def build_worker_request(
    job: Job,
    entrypoint: Entrypoint,
    files_down: dict[str, str],
    paths_upload: dict[str, str],
) -> dict[str, Any]:
    """The body of `POST {WORKERFACING_API_URL}/_jobs`; `files_down` maps names to storage URIs.

    A job not yet recorded has no id: the payload is then completed by `with_job_id` when sent.
    """
    hardware = job.hardware if job.hardware is not None else HardwareSpec()
    payload = {
        "job": {
            "app": {"cmd": list(entrypoint.app.cmd), "env": dict(job.attributes.env_vars)},
            "handler": {
                "image_url": entrypoint.handler.image_url,
                "image_name": job.application.application,
                "image_version": job.application.version,
                "entrypoint": job.application.entrypoint,
                "files_down": files_down,
                "files_up": dict(entrypoint.handler.files_up),
            },
            "meta": {"date_created": job.date_created.isoformat()},
            "hardware": msgspec.to_builtins(hardware),
        },
        "environment": job.environment,
        "group": None,
        "priority": job.priority,
        # The job's folders written like `paths_out`, without the trailing slash of a folder's URI.
        "paths_upload": {kind: uri.rstrip("/") for kind, uri in paths_upload.items()},
    }
    return payload if job.id is None else with_job_id(payload, job.id, job.date_created)


def with_job_id(payload: dict[str, Any], job_id: int, date_created: datetime) -> dict[str, Any]:
    """`payload` with the job's id and idempotency key in `job.meta` (a copy; idempotent)."""
    job = payload["job"]
    meta = {"job_id": job_id, **job["meta"], "idempotency_key": idempotency_key(job_id, date_created)}
    meta["job_id"] = job_id
    return {**payload, "job": {**job, "meta": meta}}
