"""Endpoints for the worker-facing API, authenticated by the shared `x-api-key` (the `internal_only` guard)."""

from __future__ import annotations

import msgspec
from litestar import MediaType, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from decode_userapi.domain.commands import StatusUpdate
from decode_userapi.domain.jobs import JobStatus
from decode_userapi.entrypoints.http.errors import error_responses
from decode_userapi.entrypoints.http.guards import internal_only
from decode_userapi.services.jobs import JobService

# Each answer as a bare JSON string (`"running"`), encoded once: Litestar would send a `str` as text.
_ANSWERS = {status: msgspec.json.encode(status) for status in JobStatus}


@put(
    "/_job_status",
    tags=["internal"],
    summary="A status update from the worker-facing API; answers the job's status after it",
    guards=[internal_only],
    media_type=MediaType.JSON,
    response_description="the job's status as a bare JSON string, e.g. \"running\"",
    responses=error_responses(401, 404, 413, 422, 503),
)
async def job_status(jobs: NamedDependency[JobService], data: JSONBody[StatusUpdate]) -> bytes:
    # The stored status: an update that arrived out of order leaves (and answers) the newer one.
    return _ANSWERS[(await jobs.apply_status_update(data)).status]
