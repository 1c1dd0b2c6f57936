"""The job payload for the worker-facing API (CONTRACT "Talking to the worker-facing API")."""

from __future__ import annotations

from typing import Any

import msgspec

from decode_userapi.domain.applications import Entrypoint
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


def build_worker_request(
    job: Job,
    entrypoint: Entrypoint,
    files_down: dict[str, str],
    paths_upload: dict[str, str],
) -> dict[str, Any]:
    """The body of `POST {WORKERFACING_API_URL}/_jobs`; `files_down` maps names to storage URIs."""
    assert job.id is not None, "a job is dispatched after it is recorded"
    hardware = job.hardware if job.hardware is not None else HardwareSpec()
    return {
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
            "meta": {"job_id": job.id, "date_created": job.date_created.isoformat()},
            "hardware": msgspec.to_builtins(hardware),
        },
        "environment": job.environment,
        "group": None,
        "priority": job.priority,
        "paths_upload": paths_upload,
    }
