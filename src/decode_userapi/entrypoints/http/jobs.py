"""`/jobs`: start, follow and delete jobs."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from decode_userapi.domain.commands import JobCreate, JobFilter, JobView
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

    @get(
        "/",
        summary="The caller's jobs, newest first; X-Total-Count: how many match the filters",
        responses=error_responses(401, 403, 422, 503),
    )
    async def list_jobs(
        self,
        principal: NamedDependency[Principal],
        jobs: NamedDependency[JobService],
        offset: Annotated[int, QueryParameter(description="jobs to skip")] = 0,
        limit: Annotated[int, QueryParameter(description="at most this many, 1 to 1000")] = 100,
        status: Annotated[
            list[str] | None, QueryParameter(description="any of these statuses: repeated, or comma-separated")
        ] = None,
        name: Annotated[str | None, QueryParameter(description="job_name starts with this (taken literally)")] = None,
        application: Annotated[str | None, QueryParameter(description="the application's name")] = None,
        created_after: Annotated[
            str | None, QueryParameter(description="created strictly after: ISO 8601 with an offset or Z")
        ] = None,
        created_before: Annotated[
            str | None, QueryParameter(description="created strictly before: ISO 8601 with an offset or Z")
        ] = None,
    ) -> Response[list[JobView]]:
        filter = JobFilter.from_query(
            status=status or (), name=name, application=application,
            created_after=created_after, created_before=created_before,
        )  # fmt: skip
        page = await jobs.page(principal, offset=offset, limit=limit, filter=filter)
        return Response(page.jobs, headers={"X-Total-Count": str(page.total)})

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
