"""Endpoints for the worker-facing API, authenticated by the shared `x-api-key`."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from decode_userapi.domain.commands import StatusUpdate, StatusView
from decode_userapi.domain.errors import Unauthenticated
from decode_userapi.entrypoints.http.errors import error_responses
from decode_userapi.services.jobs import JobService


def check_internal_key(request: Request[Any, Any, Any]) -> None:
    """Constant-time comparison; with no key configured the internal API is closed to everyone."""
    expected: str | None = request.app.state.internal_api_key
    given = request.headers.get("x-api-key")
    if not expected or given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthenticated("a valid x-api-key header is needed")


@put(
    "/_job_status",
    tags=["internal"],
    summary="A status update from the worker-facing API",
    responses=error_responses(400, 401, 404, 413, 503),
)
async def job_status(
    request: Request[Any, Any, Any], jobs: NamedDependency[JobService], data: JSONBody[StatusUpdate]
) -> StatusView:
    check_internal_key(request)
    return await jobs.apply_status_update(data)
