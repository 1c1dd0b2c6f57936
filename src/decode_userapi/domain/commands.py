"""What crosses the service boundary: commands in, views out (msgspec Structs, CONTRACT names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from decode_userapi.domain.jobs import (
    ApplicationSpec,
    DispatchState,
    HardwareSpec,
    Job,
    JobAttributes,
    JobStatus,
    PathsOut,
)
from decode_userapi.domain.text import refuse_unsafe_text


class JobCreate(msgspec.Struct, kw_only=True):
    """A request to start a job. Everything but the name and the application has a default."""

    job_name: str
    application: ApplicationSpec
    environment: str | None = None
    priority: int | None = 0
    attributes: JobAttributes | None = None
    hardware: HardwareSpec | None = None

    def __post_init__(self) -> None:
        # Every string of the command is stored: none may hold NUL or a lone surrogate (422).
        refuse_unsafe_text(self)


class StatusUpdate(msgspec.Struct, kw_only=True):
    """An update from the worker-facing API. `runtime_details` are a worker's log lines: they are never
    refused for their characters (NUL and lone surrogates are stored as U+FFFD, see
    `domain.jobs.apply_status_update`), and only their newest `MAX_RUNTIME_DETAILS` characters are kept."""

    job_id: int
    status: JobStatus
    runtime_details: str | None = None


class StatusView(msgspec.Struct):
    """The answer to a status update: the job's stored status after it."""

    job_id: int
    status: JobStatus


class JobView(msgspec.Struct, kw_only=True, gc=False):  # see domain.jobs on gc=False
    id: int
    job_name: str
    user_id: str
    user_email: str | None
    environment: str | None
    priority: int
    application: ApplicationSpec
    attributes: JobAttributes
    hardware: HardwareSpec | None
    status: JobStatus
    date_created: datetime
    date_started: datetime | None
    date_finished: datetime | None
    runtime_details: str | None
    paths_out: PathsOut
    dispatch: DispatchState

    @classmethod
    def of(cls, job: Job) -> JobView:
        assert job.id is not None
        return cls(
            id=job.id,
            job_name=job.job_name,
            user_id=job.user_id,
            user_email=job.user_email,
            environment=job.environment,
            priority=job.priority,
            application=job.application,
            attributes=job.attributes,
            hardware=job.hardware,
            status=job.status,
            date_created=job.date_created,
            date_started=job.date_started,
            date_finished=job.date_finished,
            runtime_details=job.runtime_details,
            paths_out=job.paths_out,
            dispatch=job.dispatch,
        )


class UserView(msgspec.Struct):
    email: str | None
    groups: list[str]


class TokenView(msgspec.Struct):
    id_token: str
    expires_in: int


class Rename(msgspec.Struct):
    path: str


AccessInfo = dict[str, Any]
