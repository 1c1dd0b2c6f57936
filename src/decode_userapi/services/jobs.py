"""Job use cases: create, read, list, delete, and status updates from the worker-facing API."""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable
from typing import Any

import msgspec
import structlog

from decode_userapi.domain.applications import INPUT_KINDS, Entrypoint, check_env_vars
from decode_userapi.domain.commands import ALL_JOBS, JobCreate, JobFilter, JobPage, JobView, StatusUpdate, StatusView
from decode_userapi.domain.dispatch import InputSelection, build_worker_request, files_down_keys
from decode_userapi.domain.errors import InvalidPath, InvalidRequest, MissingInput, NotFound
from decode_userapi.domain.events import CANCEL, STATUS, EventNote, JobEvent
from decode_userapi.domain.files import UserPath
from decode_userapi.domain.identity import USERS_GROUP, Principal
from decode_userapi.domain.jobs import (
    MAX_INPUTS,
    DispatchStatus,
    FilesDown,
    Job,
    JobAttributes,
    JobStatus,
    UpdateOutcome,
    apply_status_update,
    cancel_job,
    check_environment,
    check_job_name,
    check_priority,
    end_of_job_email,
)
from decode_userapi.ports.catalog import ApplicationCatalogSource
from decode_userapi.ports.clock import Clock
from decode_userapi.ports.email import EmailSender
from decode_userapi.ports.jobs import JobStore
from decode_userapi.ports.storage import FileStorage

log = structlog.get_logger(__name__)

MAX_JOB_ID = 2**63 - 1
MAX_PAGE = 1000
CAS_ATTEMPTS = 5


# Part of every ETag: raise it when the JSON of a job changes for the same stored jobs (a new field),
# so that answers cached by an older version no longer match.
TAG_VERSION = 1


def _tag(*parts: object) -> str:
    """A weak ETag (RFC 9110): an equal answer, not byte-equal (compression may differ). The user is
    part of it, so one browser shared by two users never takes one's answer for the other's."""
    text = "\x1f".join(str(p) for p in (TAG_VERSION, *parts))
    return f'W/"{hashlib.blake2b(text.encode(), digest_size=12).hexdigest()}"'


def _list_tag(user_id: str, changes: int, offset: int, limit: int, filter: JobFilter) -> str:
    return _tag("list", user_id, changes, offset, limit, msgspec.json.encode(filter))


def _check_page(offset: int, limit: int) -> None:
    if offset < 0 or offset > MAX_JOB_ID:
        raise InvalidRequest("offset must be 0 or more")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")


def _check_events_page(after: int, limit: int) -> None:
    if after < 0 or after > MAX_JOB_ID:
        raise InvalidRequest("after must be 0 or more (the id of the last event seen)")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")


def _check_job_id(job_id: int) -> int:
    if not 1 <= job_id <= MAX_JOB_ID:
        raise NotFound(f"job {job_id} not found")
    return job_id


class JobService:
    def __init__(
        self,
        store: JobStore,
        storage: FileStorage,
        catalog: ApplicationCatalogSource,
        email: EmailSender,
        clock: Clock,
        dispatch_now: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._storage = storage
        self._catalog = catalog
        self._email = email
        self._clock = clock
        self._dispatch_now = dispatch_now

    async def applications(self) -> dict[str, Any]:
        return (await self._catalog.current()).document

    async def create(self, principal: Principal, command: JobCreate) -> JobView:
        """Validate and record a job; the dispatcher hands it to the worker-facing API."""
        check_job_name(command.job_name)
        priority = check_priority(command.priority if command.priority is not None else 0)
        environment = check_environment(command.environment)
        attributes = command.attributes or JobAttributes()
        entrypoint = (await self._catalog.current()).resolve(command.application)
        check_env_vars(entrypoint, attributes.env_vars)
        selections = await self._resolve_inputs(principal.user_id, attributes.files_down, entrypoint)

        job = Job(
            user_id=principal.user_id,
            user_email=principal.email,
            job_name=command.job_name,
            environment=environment,
            priority=priority,
            application=command.application,
            attributes=attributes,
            hardware=command.hardware,
            date_created=self._clock.now(),
        )
        payload = build_worker_request(
            job, entrypoint, self._files_down(principal.user_id, selections), self._paths_upload(job)
        )
        job = await self._store.add_with_dispatch(job, payload)  # the job and its outbox entry, at once
        self._dispatch_now()
        log.info("job.created", job_id=job.id, user_id=job.user_id, job_name=job.job_name)
        return JobView.of(job)

    async def get(self, principal: Principal, job_id: int) -> JobView:
        return JobView.of(await self._owned(principal, job_id))

    async def get_tagged(self, principal: Principal, job_id: int) -> tuple[JobView, str]:
        """`get`, and its ETag (as `job_tag` gives it), read together: one read."""
        _check_job_id(job_id)
        job, changes = await self._store.get_with_changes(job_id, principal.user_id)
        if job is None or job.user_id != principal.user_id:
            raise NotFound(f"job {job_id} not found")
        return JobView.of(job), _tag("job", principal.user_id, changes, job_id)

    async def list(
        self, principal: Principal, *, offset: int = 0, limit: int = 100, filter: JobFilter | None = None
    ) -> builtins.list[JobView]:
        """The caller's jobs that `filter` matches (all without one), newest first, then paged."""
        _check_page(offset, limit)
        jobs = await self._store.list_for_user(principal.user_id, offset=offset, limit=limit, filter=filter or ALL_JOBS)
        return [JobView.of(job) for job in jobs]

    async def page(
        self, principal: Principal, *, offset: int = 0, limit: int = 100, filter: JobFilter | None = None
    ) -> JobPage:
        """`list`, how many jobs `filter` matches in all (`X-Total-Count`) and the page's ETag (as
        `list_tag` gives it), read together: one read."""
        _check_page(offset, limit)
        filter = filter or ALL_JOBS
        page = await self._store.page_for_user(principal.user_id, offset=offset, limit=limit, filter=filter)
        tag = _list_tag(principal.user_id, page.changes, offset, limit, filter)
        return JobPage(jobs=[JobView.of(job) for job in page.jobs], total=page.total, tag=tag)

    async def list_tag(
        self, principal: Principal, *, offset: int = 0, limit: int = 100, filter: JobFilter | None = None
    ) -> str:
        """The ETag of `page(...)` with these arguments: it changes whenever the answer may (the
        caller's change counter, read before the page is), without reading the jobs. One cheap read."""
        _check_page(offset, limit)
        changes = await self._store.changes(principal.user_id)
        return _list_tag(principal.user_id, changes, offset, limit, filter or ALL_JOBS)

    async def job_tag(self, principal: Principal, job_id: int) -> str:
        """The ETag of `get(principal, job_id)`, as `list_tag`."""
        _check_job_id(job_id)
        return _tag("job", principal.user_id, await self._store.changes(principal.user_id), job_id)

    async def delete(self, principal: Principal, job_id: int) -> None:
        """Forget the job and delete its output folders. The worker's next update then gets 404."""
        _check_job_id(job_id)
        async with self._store.unit_of_work() as uow:
            job = await uow.get(job_id, for_update=True)
            if job is None or job.user_id != principal.user_id:
                raise NotFound(f"job {job_id} not found")
            await uow.delete(job_id)
        paths = job.paths_out
        for folder in (paths.output, paths.log, paths.artifact):
            await self._storage.delete(job.user_id, UserPath.parse(folder + "/"))
        log.info("job.deleted", job_id=job_id, user_id=job.user_id)

    async def cancel(self, principal: Principal, job_id: int) -> JobView:
        """Stop the caller's job: it ends as `canceled`, keeping its record and outputs, and its owner
        is emailed as for the other final states. A job not yet delivered never will be (its pending
        dispatch is dropped in the same transaction, and a sender holding it can no longer record
        it); a delivered one's worker is told at its next status update (404: stop). `Conflict` if
        the job has ended already."""
        _check_job_id(job_id)
        async with self._store.unit_of_work() as uow:
            job = await uow.get(job_id, for_update=True)
            if job is None or job.user_id != principal.user_id:
                raise NotFound(f"job {job_id} not found")
            cancel_job(job, self._clock.now())
            await uow.save(job)
            undelivered = await uow.cancel_dispatch(job_id)
            told = "not yet delivered: it never will be" if undelivered else "its worker is told to stop at its next update"
            await uow.add_event(job_id, job.user_id, EventNote(CANCEL, JobStatus.canceled, told))
        if undelivered:  # as the store now has it
            job.dispatch = msgspec.structs.replace(job.dispatch, status=DispatchStatus.canceled, next_attempt_at=None)
        log.info("job.canceled", job_id=job_id, user_id=job.user_id, delivered=not undelivered)
        if job.user_email:
            await self._email.send(job.user_email, *end_of_job_email(job))
        return JobView.of(job)

    async def owner(self, job_id: int) -> Principal:
        """The principal of the job's owner (a member of `users`): for operators, who act on a job
        on its owner's behalf (`decode-userapi jobs ...`). `NotFound` if there is no such job."""
        _check_job_id(job_id)
        job = await self._store.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return Principal(job.user_id, job.user_email, (USERS_GROUP,))

    async def events(self, principal: Principal, job_id: int, *, after: int = 0, limit: int = 100) -> builtins.list[JobEvent]:
        """The history of the caller's job, oldest first: the events with an id above `after` (the
        last one seen), at most `limit` (1 to 1000)."""
        _check_events_page(after, limit)
        await self._owned(principal, job_id)
        return await self._store.events_for_job(job_id, principal.user_id, after=after, limit=limit)

    async def apply_status_update(self, update: StatusUpdate) -> StatusView:
        """Apply an update from the worker-facing API; the owner is emailed once on finished/error.
        An update of a canceled job is recorded (ignored) and answered `NotFound`: its worker stops."""
        _check_job_id(update.job_id)
        job, outcome = await self._apply(update)
        if outcome.stale:
            await self._store.add_event(
                update.job_id, job.user_id, EventNote(STATUS, update.status, update.runtime_details, ignored=True)
            )
            log.info(
                "job.status_ignored",
                job_id=job.id,
                stored=job.status.value,
                received=update.status.value,
            )
            if job.status is JobStatus.canceled:
                raise NotFound(f"job {update.job_id} was canceled by its owner: stop it")
        else:
            log.info("job.status", job_id=job.id, status=job.status.value)
        if outcome.entered_terminal and job.user_email:
            await self._email.send(job.user_email, *end_of_job_email(job))
        return StatusView(job_id=update.job_id, status=job.status)

    async def _apply(self, update: StatusUpdate) -> tuple[Job, UpdateOutcome]:
        """Read, apply, and compare-and-set: one read for a keep-alive, a read and a write for a
        change, and no lock held across them. Updates of one job racing each other retry; after
        `CAS_ATTEMPTS` lost races the job is locked instead, so every update lands."""
        for _ in range(CAS_ATTEMPTS):
            job = await self._store.get(update.job_id)
            if job is None:
                raise NotFound(f"job {update.job_id} not found")
            before = msgspec.structs.replace(job)
            outcome = apply_status_update(job, update.status, update.runtime_details, self._clock.now())
            if not outcome.applied or await self._store.replace_status(before, job, details=update.runtime_details):
                return job, outcome
        async with self._store.unit_of_work() as uow:
            job = await uow.get(update.job_id, for_update=True)
            if job is None:
                raise NotFound(f"job {update.job_id} not found")
            outcome = apply_status_update(job, update.status, update.runtime_details, self._clock.now())
            if outcome.applied:
                await uow.save(job)
                await uow.add_event(update.job_id, job.user_id, EventNote(STATUS, update.status, update.runtime_details))
        return job, outcome

    async def _owned(self, principal: Principal, job_id: int) -> Job:
        _check_job_id(job_id)
        job = await self._store.get(job_id)
        if job is None or job.user_id != principal.user_id:
            raise NotFound(f"job {job_id} not found")
        return job

    async def _resolve_inputs(
        self, user: str, files_down: FilesDown, entrypoint: Entrypoint
    ) -> builtins.list[InputSelection]:
        """Check every named input exists, and list the files of the ones the entrypoint mounts."""
        named: list[tuple[str, str]] = []
        if files_down.config_id is not None:
            named.append(("config_id", files_down.config_id))
        named += [("data_ids", i) for i in files_down.data_ids]
        named += [("artifact_ids", i) for i in files_down.artifact_ids]
        if len(named) > MAX_INPUTS:
            raise InvalidRequest(f"a job may name at most {MAX_INPUTS} inputs")
        selections = []
        for kind, input_id in named:
            folder = INPUT_KINDS[kind]
            try:
                relative = UserPath.parse(input_id)
            except InvalidPath as e:
                raise MissingInput(f"{kind} entry {input_id!r}: {e.detail}") from e
            if relative.is_root:
                raise MissingInput(f"{kind} entries must name a file or folder inside {folder}/")
            path = UserPath((folder,), True).join(relative)
            entry = await self._storage.stat(user, path)
            if entry is None:
                raise MissingInput(f"{kind} entry {input_id!r} does not exist under {folder}/")
            mount = entrypoint.handler.files_down.get(kind)
            if mount is None:
                continue  # the entrypoint does not mount this kind of input
            if entry.is_dir:
                base = path.as_dir()
                files = tuple(e.path for e in await self._storage.list(user, base, recursive=True) if not e.is_dir)
            else:
                base = path.as_file()
                files = (base,)
            selections.append(InputSelection(mount=mount, base=base, files=files))
        return selections

    def _files_down(self, user: str, selections: builtins.list[InputSelection]) -> dict[str, str]:
        return {
            name: self._storage.storage_uri(user, path)
            for selection in selections
            for name, path in files_down_keys(selection)
        }

    def _paths_upload(self, job: Job) -> dict[str, str]:
        paths = job.paths_out
        return {
            kind: self._storage.storage_uri(job.user_id, UserPath.parse(folder + "/"))
            for kind, folder in (("output", paths.output), ("log", paths.log), ("artifact", paths.artifact))
        }
