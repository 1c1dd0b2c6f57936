"""Jobs and their lifecycle."""

from __future__ import annotations

import enum
import re
from datetime import datetime

import msgspec

from decode_userapi.domain.errors import Conflict, InvalidRequest
from decode_userapi.domain.text import replace_unsafe_text


class JobStatus(str, enum.Enum):
    queued = "queued"
    pulled = "pulled"
    preprocessing = "preprocessing"
    running = "running"
    postprocessing = "postprocessing"
    finished = "finished"
    error = "error"
    canceled = "canceled"  # beyond CONTRACT: the owner canceled it (POST /jobs/{id}/cancel)

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    JobStatus.queued: 0,
    JobStatus.pulled: 1,
    JobStatus.preprocessing: 2,
    JobStatus.running: 3,
    JobStatus.postprocessing: 4,
    JobStatus.finished: 5,
    JobStatus.error: 5,
    JobStatus.canceled: 5,
}
_TERMINAL = frozenset((JobStatus.finished, JobStatus.error, JobStatus.canceled))

Environment = str  # "cloud" | "local"; validated in `validate_environment`
ENVIRONMENTS = ("cloud", "local")
MIN_PRIORITY, MAX_PRIORITY = 0, 5
MAX_JOB_NAME = 128
MAX_ENV_VARS = 64
MAX_ENV_VALUE = 4096
MAX_INPUTS = 1000
MAX_NAME = 256  # application, version, entrypoint, env var names, hardware strings
MAX_RUNTIME_DETAILS = 64 * 1024  # characters kept of a job's runtime details (the newest)
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-]*")


# The job Structs are `gc=False`: they hold only strings, numbers, datetimes and plain containers,
# so they can never be part of a reference cycle, and a page of 100 jobs (about 1,000 objects) no
# longer triggers garbage collections that walk the whole heap (measured: a quarter of a listing's CPU).


class ApplicationSpec(msgspec.Struct, gc=False):
    application: str
    version: str
    entrypoint: str


class FilesDown(msgspec.Struct, gc=False):
    config_id: str | None = None
    data_ids: list[str] = []
    artifact_ids: list[str] = []


class JobAttributes(msgspec.Struct, gc=False):
    files_down: FilesDown = msgspec.field(default_factory=FilesDown)
    env_vars: dict[str, str] = {}


class HardwareSpec(msgspec.Struct, gc=False):
    cpu_cores: int | None = None
    memory: int | None = None
    gpu_model: str | None = None
    gpu_archi: str | None = None
    gpu_mem: int | None = None


class PathsOut(msgspec.Struct, gc=False):
    output: str
    log: str
    artifact: str


def paths_out_for(job_name: str) -> PathsOut:
    return PathsOut(output=f"output/{job_name}", log=f"log/{job_name}", artifact=f"artifact/{job_name}")


def check_job_name(name: str) -> str:
    """A job name is one path segment: it names the job's output folders, and may never leave them."""
    if not 1 <= len(name) <= MAX_JOB_NAME or not _JOB_NAME.fullmatch(name) or name.rstrip(".") != name:
        raise InvalidRequest(
            f"job_name must be 1 to {MAX_JOB_NAME} letters, digits or '. _ + -' characters, "
            "starting with a letter or digit and not ending with a dot"
        )
    return name


def check_priority(priority: int) -> int:
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidRequest(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}")
    return priority


def check_environment(environment: str | None) -> str | None:
    if environment is not None and environment not in ENVIRONMENTS:
        raise InvalidRequest(f"environment must be one of {', '.join(ENVIRONMENTS)} or null")
    return environment


class DispatchStatus(str, enum.Enum):
    """Where the job's hand-over to the worker-facing API stands."""

    pending = "pending"  # recorded; being delivered (retried with backoff while the API is down)
    sent = "sent"  # the worker-facing API accepted it
    failed = "failed"  # refused for good, or not accepted before the retry window closed
    canceled = "canceled"  # the job was canceled before it was delivered: it never will be


class DispatchState(msgspec.Struct, gc=False):
    status: DispatchStatus = DispatchStatus.pending
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None


class Job(msgspec.Struct, kw_only=True, gc=False):
    """A job as recorded. `id` is None until the store assigns one."""

    id: int | None = None
    user_id: str
    user_email: str | None
    job_name: str
    environment: str | None
    priority: int
    application: ApplicationSpec
    attributes: JobAttributes
    hardware: HardwareSpec | None
    status: JobStatus = JobStatus.queued
    date_created: datetime
    date_started: datetime | None = None
    date_finished: datetime | None = None
    runtime_details: str | None = None
    dispatch: DispatchState = msgspec.field(default_factory=DispatchState)

    @property
    def paths_out(self) -> PathsOut:
        return paths_out_for(self.job_name)


class UpdateOutcome(msgspec.Struct, frozen=True):
    """What applying a status update did."""

    applied: bool  # the status or the details changed
    entered_terminal: bool  # the job entered `finished`/`error`/`canceled` with this update
    stale: bool  # the update was older than the stored state and changed nothing


def apply_status_update(
    job: Job, status: JobStatus, runtime_details: str | None, now: datetime
) -> UpdateOutcome:
    """Apply one update from the worker-facing API, in place.

    The order is queued < pulled < preprocessing < running < postprocessing < finished|error.
    From `queued` any update applies (workers may skip steps). From an active state a later state
    applies; `queued` applies too (the worker-facing API re-queues timed-out jobs; `date_started`
    is kept); the same state is a keep-alive. An earlier active state is stale and changes nothing.
    `finished`, `error` and `canceled` are final. Non-empty details are appended on a new line.
    """
    current = job.status
    if current.is_terminal:
        return UpdateOutcome(applied=False, entered_terminal=False, stale=True)
    moves = (
        current is JobStatus.queued
        or status is JobStatus.queued
        or status.rank >= current.rank
    )
    if not moves:
        return UpdateOutcome(applied=False, entered_terminal=False, stale=True)
    changed = status is not current
    job.status = status
    if job.date_started is None and status is not JobStatus.queued and not status.is_terminal:
        job.date_started = now  # the first `pulled`, or the first later step if a worker skipped it
    if status.is_terminal:
        job.date_finished = now
    if runtime_details:
        job.runtime_details = append_runtime_details(job.runtime_details, runtime_details)
        changed = True
    return UpdateOutcome(applied=changed, entered_terminal=status.is_terminal, stale=False)


def cancel_job(job: Job, now: datetime) -> None:
    """The owner stops the job, in place: it ends as `canceled` (its record and outputs stay).
    `Conflict` if it has ended already."""
    if job.status.is_terminal:
        raise Conflict(f"job {job.id} has ended already ({job.status.value}): only a job not yet ended can be canceled")
    job.status = JobStatus.canceled
    job.date_finished = now


_DROPPED = re.compile(r"\[… ([0-9,]+) earlier characters dropped …\]\n")


def append_runtime_details(
    stored: str | None, details: str, limit: int = MAX_RUNTIME_DETAILS
) -> str:
    """`details` appended to `stored` on a new line, keeping the newest `limit` characters.

    Characters no database stores (NUL, lone surrogates) become U+FFFD: a worker's log line is never
    lost, nor refused. When older text must go, it goes up to a line break if one comes soon after
    the cut, and a first line ``[… 12,345 earlier characters dropped …]`` says how much went in all
    (counting what earlier truncations dropped); the result, marker included, is at most `limit`
    characters. Characters, not bytes (up to 4 bytes each in UTF-8): PostgreSQL's `text` and
    Python's `str` count them alike.
    """
    details = replace_unsafe_text(details)
    text = f"{stored}\n{details}" if stored else details
    if len(text) <= limit:
        return text
    dropped = 0
    if (earlier := _DROPPED.match(text)) is not None:
        dropped = int(earlier.group(1).replace(",", ""))
        text = text[earlier.end() :]
    marker_room = len("[…  earlier characters dropped …]\n") + 32  # room for any count's digits
    keep = max(limit - marker_room, 0)
    cut = len(text) - keep
    line_break = text.find("\n", cut, min(cut + 1024, len(text) - 1))
    if line_break != -1:
        cut = line_break + 1  # start the kept text at a line of its own, if one starts soon
    dropped += cut
    return f"[… {dropped:,} earlier characters dropped …]\n{text[cut:]}"


def end_of_job_email(job: Job) -> tuple[str, str]:
    """Subject and plain text of the email a job's owner gets when it ends."""
    subject = f"DECODE OpenCloud job {job.job_name} ({job.id}) {job.status.value}"
    lines = [
        f"Your job {job.job_name} (id {job.id}) ended with status {job.status.value}.",
        (
            f"Application: {job.application.application} {job.application.version} "
            f"{job.application.entrypoint}"
        ),
    ]
    if job.runtime_details:
        lines += ["", "Runtime details:", job.runtime_details]
    return subject, "\n".join(lines)
