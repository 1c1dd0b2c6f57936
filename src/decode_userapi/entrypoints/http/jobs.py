"""`/jobs`: start, follow and delete jobs.

`GET /jobs` and `GET /jobs/{id}` answer with a weak `ETag` and `Cache-Control: private, no-cache`:
browsers then revalidate by themselves, and a matching `If-None-Match` gets 304 without the jobs
being read (the tag comes from the caller's change counter, one cheap read). The usual such poll is
answered in front of the handler (`revalidation.py`)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Controller, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT, HTTP_304_NOT_MODIFIED

from decode_userapi.domain.commands import JobCreate, JobFilter, JobView
from decode_userapi.domain.events import JobEvent
from decode_userapi.domain.identity import Principal
from decode_userapi.entrypoints.http.errors import error_responses
from decode_userapi.entrypoints.http.guards import users_only
from decode_userapi.entrypoints.http.revalidation import revalidation
from decode_userapi.services.jobs import JobService

CACHE_CONTROL = "private, no-cache"  # a browser may keep it, and asks (If-None-Match) before each use
_ENTITY_TAG = re.compile(r'\s*(?:W/)?"([^"]*)"\s*(?:,|$)')
IfNoneMatch = Annotated[
    str | None, HeaderParameter(name="If-None-Match", description="ETags of answers held: 304 if one is current", required=False)
]
NOT_MODIFIED = {304: ResponseSpec(None, description="Not Modified: the answer of the ETag sent is current")}


def not_modified(if_none_match: str | None, tag: str) -> bool:
    """Whether `If-None-Match` (RFC 9110 13.1.2: `*` or a list of entity tags, weakly compared)
    names `tag`. A malformed field matches nothing: the full answer is never wrong."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = tag.removeprefix("W/")
    position, found = 0, False
    while position < len(if_none_match):
        match = _ENTITY_TAG.match(if_none_match, position)
        if match is None or match.end() == position:
            return False
        found = found or f'"{match[1]}"' == opaque
        position = match.end()
    return found


def _cached(tag: str) -> dict[str, str]:
    return {"ETag": tag, "Cache-Control": CACHE_CONTROL}


# What `revalidation` asks: the tag the handler would send, read as the handler reads the request
# (Litestar's query parser, the handler's own defaults, `JobFilter.from_query`, the service's tag),
# or None for anything it might read otherwise: then the handler answers.
_LIST_FILTERS = ("name", "application", "created_after", "created_before")


def _number(values: list[str]) -> int | None:
    """The one plain decimal number given (None otherwise)."""
    return int(values[0]) if len(values) == 1 and values[0].isascii() and values[0].isdecimal() else None


async def _list_tag(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    query = connection.query_params
    if not set(query) <= {"offset", "limit", "status", *_LIST_FILTERS}:
        return None
    given = {name: query.getall(name) for name in _LIST_FILTERS if name in query}
    if any(len(values) != 1 or not values[0] for values in given.values()):
        return None
    defaults = connection.route_handler.parsed_fn_signature.parameters
    offset = _number(query.getall("offset")) if "offset" in query else defaults["offset"].default
    limit = _number(query.getall("limit")) if "limit" in query else defaults["limit"].default
    if offset is None or limit is None:
        return None
    filter = JobFilter.from_query(status=query.getall("status", []), **{name: v[0] for name, v in given.items()})
    jobs: JobService = connection.app.state.jobs
    return await jobs.list_tag(connection.user, offset=offset, limit=limit, filter=filter)


async def _job_tag(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    job_id = connection.path_params.get("job_id")
    jobs: JobService = connection.app.state.jobs
    return await jobs.job_tag(connection.user, job_id) if type(job_id) is int and not connection.query_params else None


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
        responses=NOT_MODIFIED | error_responses(401, 403, 422, 503),
        middleware=[revalidation(_list_tag, not_modified, _cached)],
    )
    async def list_jobs(
        self,
        principal: NamedDependency[Principal],
        jobs: NamedDependency[JobService],
        if_none_match: IfNoneMatch = None,
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
        # A current tag was answered 304 in front of this handler (`revalidation`), with one cheap read;
        # what reaches here is mostly a stale one, so the page is read at once (it carries the tag).
        page = await jobs.page(principal, offset=offset, limit=limit, filter=filter)  # jobs, count and tag at once
        if not_modified(if_none_match, page.tag):
            return Response(None, status_code=HTTP_304_NOT_MODIFIED, headers=_cached(page.tag))  # type: ignore[arg-type]
        return Response(page.jobs, headers=_cached(page.tag) | {"X-Total-Count": str(page.total)})

    @get(
        "/{job_id:int}",
        summary="One of the caller's jobs",
        responses=NOT_MODIFIED | error_responses(401, 403, 404, 422, 503),
        middleware=[revalidation(_job_tag, not_modified, _cached)],
    )
    async def get_job(
        self,
        principal: NamedDependency[Principal],
        jobs: NamedDependency[JobService],
        job_id: FromPath[int],
        if_none_match: IfNoneMatch = None,
    ) -> Response[JobView]:
        # As `list_jobs`: current tags were answered in front; the job is read (404 if it is not the
        # caller's, `*` included) with its tag in one read.
        view, tag = await jobs.get_tagged(principal, job_id)
        if not_modified(if_none_match, tag):
            return Response(None, status_code=HTTP_304_NOT_MODIFIED, headers=_cached(tag))  # type: ignore[arg-type]
        return Response(view, headers=_cached(tag))

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

    @post(
        "/{job_id:int}/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel a job: it ends as `canceled`, keeping its record and outputs; 409 if it has ended already",
        responses=error_responses(401, 403, 404, 409, 503),
    )
    async def cancel(self, principal: NamedDependency[Principal], jobs: NamedDependency[JobService], job_id: FromPath[int]) -> JobView:
        return await jobs.cancel(principal, job_id)

    @get(
        "/{job_id:int}/events",
        summary="A job's history, oldest first: every change, and the updates it ignored",
        responses=error_responses(401, 403, 404, 422, 503),
    )
    async def events(
        self,
        principal: NamedDependency[Principal],
        jobs: NamedDependency[JobService],
        job_id: FromPath[int],
        after: Annotated[int, QueryParameter(description="the id of the last event seen: the next page starts after it")] = 0,
        limit: Annotated[int, QueryParameter(description="at most this many, 1 to 1000")] = 100,
    ) -> list[JobEvent]:
        return await jobs.events(principal, job_id, after=after, limit=limit)
