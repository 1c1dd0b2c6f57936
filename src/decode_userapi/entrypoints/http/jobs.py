"""`/jobs`: start, follow and delete jobs."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from decode_userapi.domain.commands import JobCreate, JobView
from decode_userapi.domain.identity import Principal
from decode_userapi.entrypoints.http.errors import error_responses
from decode_userapi.entrypoints.http.guards import users_only
from decode_userapi.services.jobs import JobService


class JobsController(Controller):
    path = "/jobs"
    tags = ["jobs"]
    guards = [users_only]

    @get("/applications", summary="The application config: what can be run", responses=error_responses(401, 403, 503))
    async def applications(self, principal: NamedDependency[Principal], jobs: NamedDependency[JobService]) -> dict[str, Any]:
        return await jobs.applications()

    @get("/", summary="The caller's jobs, newest first", responses=error_responses(401, 403, 422, 503))
    async def list_jobs(
        self,
        principal: NamedDependency[Principal],
        jobs: NamedDependency[JobService],
        offset: Annotated[int, QueryParameter(description="jobs to skip")] = 0,
        limit: Annotated[int, QueryParameter(description="at most this many, 1 to 1000")] = 100,
    ) -> list[JobView]:
        return await jobs.list(principal, offset=offset, limit=limit)

    @get("/{job_id:int}", summary="One of the caller's jobs", responses=error_responses(401, 403, 404, 422, 503))
    async def get_job(self, principal: NamedDependency[Principal], jobs: NamedDependency[JobService], job_id: FromPath[int]) -> JobView:
        return await jobs.get(principal, job_id)

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Start a job",
        responses=error_responses(400, 401, 403, 409, 413, 422, 503),
    )
    async def create(self, principal: NamedDependency[Principal], jobs: NamedDependency[JobService], data: JSONBody[JobCreate]) -> JobView:
        return await jobs.create(principal, data)

    @delete(
        "/{job_id:int}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a job and its outputs",
        responses=error_responses(400, 401, 403, 404, 503),
    )
    async def remove(self, principal: NamedDependency[Principal], jobs: NamedDependency[JobService], job_id: FromPath[int]) -> None:
        await jobs.delete(principal, job_id)
