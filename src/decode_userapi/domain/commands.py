"""What crosses the service boundary: commands in, views out (msgspec Structs, CONTRACT names)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.jobs import (
    MAX_ENV_VALUE,
    MAX_ENV_VARS,
    MAX_INPUTS,
    MAX_NAME,
    ApplicationSpec,
    DispatchState,
    HardwareSpec,
    Job,
    JobAttributes,
    JobStatus,
    PathsOut,
)
from decode_userapi.domain.text import check_text


class JobCreate(msgspec.Struct, kw_only=True):
    """A request to start a job. Everything but the name and the application has a default."""

    job_name: str
    application: ApplicationSpec
    environment: str | None = None
    priority: int | None = 0
    attributes: JobAttributes | None = None
    hardware: HardwareSpec | None = None

    def __post_init__(self) -> None:
        # Checked here, as the body is decoded, and answered 422 naming the field (`InvalidRequest`
        # passes through msgspec and Litestar as it is). Not as `Meta` constraints on the Structs:
        # those would apply to every stored job read back too, and answer 400.
        _check_job(self)


def _at_most(size: int, limit: int, field: str, unit: str = "characters") -> None:
    if size > limit:
        raise InvalidRequest(f"{field}: at most {limit} {unit}")


def _text(value: str, limit: int, field: str) -> None:
    check_text(value, field)  # stored: no NUL, no lone surrogate
    _at_most(len(value), limit, field)


def _check_job(job: JobCreate) -> None:
    """Every string a job stores, and how much it may carry (MAX_JSON_BYTES bounds the body).

    The job name's form, the environment and the priority are checked by the job service, the
    application's names against the catalog. Input ids are paths: the service parses them as such,
    refusing NUL, the like and overlong ones as any path (400, as CONTRACT answers an input that
    does not exist); here only their number is bounded.
    """
    check_text(job.job_name, "job_name")
    if job.environment is not None:
        _text(job.environment, MAX_NAME, "environment")
    for name in ("application", "version", "entrypoint"):
        _text(getattr(job.application, name), MAX_NAME, f"application.{name}")
    if job.attributes is not None:
        files_down = job.attributes.files_down
        for kind in ("data_ids", "artifact_ids"):
            _at_most(len(getattr(files_down, kind)), MAX_INPUTS, f"attributes.files_down.{kind}", "entries")
        env_vars = job.attributes.env_vars
        _at_most(len(env_vars), MAX_ENV_VARS, "attributes.env_vars", "variables")
        for key, value in env_vars.items():
            _text(key, MAX_NAME, "attributes.env_vars (a name)")
            _text(value, MAX_ENV_VALUE, f"attributes.env_vars[{key!r}]")
    if job.hardware is not None:
        for name in ("gpu_model", "gpu_archi"):
            if (value := getattr(job.hardware, name)) is not None:
                _text(value, MAX_NAME, f"hardware.{name}")


class JobFilter(msgspec.Struct, kw_only=True):
    """Which of a user's jobs to list: every given criterion holds (an empty filter: all of them).

    `statuses`: any of these; `name`: a prefix of `job_name`, taken literally (no wildcards),
    case-sensitive as job names are; `application`: the application's name; `created_after` and
    `created_before`: strict bounds on `date_created`, timezone-aware (a naive time is refused: it
    would mean the server's zone, or UTC, by guesswork). `matches` is the rule; the SQL store writes
    the same rule as a statement, and the contract tests hold the two to each other.
    """

    statuses: tuple[JobStatus, ...] = ()
    name: str | None = None
    application: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def __post_init__(self) -> None:
        # One order, no repeats: equal filters are equal Structs (and share a compiled statement).
        self.statuses = tuple(s for s in JobStatus if s in self.statuses)
        for field in ("name", "application"):
            value = getattr(self, field)
            if value is not None:
                _text(value, MAX_NAME, field)
        for field in ("created_after", "created_before"):
            value = getattr(self, field)
            if value is not None and value.utcoffset() is None:
                raise InvalidRequest(f"{field}: give a UTC offset (e.g. 2026-01-31T12:00:00Z or +01:00)")

    @classmethod
    def from_query(
        cls,
        *,
        status: Iterable[str] = (),
        name: str | None = None,
        application: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
    ) -> JobFilter:
        """A filter from query strings: `status` repeated or comma-separated, times in ISO 8601."""
        statuses = []
        for value in (part.strip() for item in status for part in item.split(",")):
            if not value:
                continue
            if value not in _STATUS_NAMES:
                raise InvalidRequest(f"status: unknown status {value[:64]!r}, expected one of {', '.join(_STATUS_NAMES)}")
            statuses.append(JobStatus(value))
        return cls(
            statuses=tuple(statuses),
            name=name or None,
            application=application or None,
            created_after=_iso_time(created_after, "created_after"),
            created_before=_iso_time(created_before, "created_before"),
        )

    @property
    def is_empty(self) -> bool:
        return self == ALL_JOBS

    def matches(self, job: Job) -> bool:
        return (
            (not self.statuses or job.status in self.statuses)
            and (self.name is None or job.job_name.startswith(self.name))
            and (self.application is None or job.application.application == self.application)
            and (self.created_after is None or job.date_created > self.created_after)
            and (self.created_before is None or job.date_created < self.created_before)
        )


_STATUS_NAMES = tuple(s.value for s in JobStatus)


def _iso_time(value: str | None, field: str) -> datetime | None:
    """ISO 8601; a `+` of the offset that arrived as a space (an unencoded `+` in a query) is a `+`."""
    if value is None or value == "":
        return None
    text = value.strip()
    if len(text) > 64:
        raise InvalidRequest(f"{field}: not an ISO 8601 date and time")
    if text[-6:-5] == " ":  # `…T12:00:00 01:00`: the query's `+01:00`, decoded as a form would
        text = text[:-6] + "+" + text[-5:]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{field}: not an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z") from None


ALL_JOBS = JobFilter()  # the empty filter


class JobPage(msgspec.Struct, kw_only=True):
    """One page of a user's (filtered) jobs, newest first, how many jobs the filter selects, and the
    page's ETag (it changes whenever the page may)."""

    jobs: list[JobView]
    total: int
    tag: str


class StatusUpdate(msgspec.Struct, kw_only=True):
    """An update from the worker-facing API. `runtime_details` are a worker's log lines: they are never
    refused for their characters (NUL and lone surrogates are stored as U+FFFD, see
    `domain.jobs.apply_status_update`), and only their newest `MAX_RUNTIME_DETAILS` characters are kept."""

    job_id: int
    status: JobStatus
    runtime_details: str | None = None

    def __post_init__(self) -> None:
        if self.status is JobStatus.canceled:
            raise InvalidRequest("status: `canceled` is set by the job's owner (POST /jobs/{id}/cancel), not by a worker")


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
    """An account as `GET /user` and `POST /user` show it: `email` is always a string."""

    email: str
    groups: list[str]

    @classmethod
    def of(cls, principal: Principal) -> UserView:
        return cls(email=principal.address, groups=list(principal.groups))


class TokenView(msgspec.Struct):
    id_token: str
    expires_in: int


class Rename(msgspec.Struct):
    path: str


AccessInfo = dict[str, Any]
