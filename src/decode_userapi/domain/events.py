"""A job's history: one event per change of the job, in the order the store recorded them."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import msgspec

from decode_userapi.domain.jobs import JobStatus, append_runtime_details

# What an event records (`JobEvent.kind`).
EventKind = Literal["created", "status", "dispatch", "cancel", "delete"]
CREATED: Final = "created"  # POST /jobs recorded the job (status queued)
STATUS: Final = "status"  # a status update from the worker-facing API (or the dispatcher giving up: error)
DISPATCH: Final = "dispatch"  # an attempt to hand the job to the worker-facing API: sent, retrying, failed
CANCEL: Final = "cancel"  # the owner canceled the job (status canceled)
DELETE: Final = "delete"  # the owner deleted the job: the only event kept once the job is gone
# Characters kept of one event's details (the newest, as for the job's own `runtime_details`, which
# keep MAX_RUNTIME_DETAILS): a worker resending its whole log with each update must not make every
# event as large as the job.
MAX_EVENT_DETAILS = 4096
# A job's history keeps at most this many events once trimmed (hourly, with the retention's pruning):
# a worker sending an update every few seconds must not add rows for as long as its job lives. What
# goes are the oldest `status` and `dispatch` events; `created`, `cancel` and `delete` stay.
MAX_EVENTS_PER_JOB = 1000
TRIMMABLE: Final = (STATUS, DISPATCH)


class JobEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One recorded change of a job (or an update that changed nothing, `ignored`).

    `id` grows with insertion (the order of one job's history); `seq` is the owner's change counter
    as the write that recorded the event left it (one user's `seq` values commit in order: the live
    stream resumes after a `seq`); `at` is the store's clock; `status` the status received or
    entered; `details` the runtime details received, or the dispatch attempt's outcome.
    """

    id: int
    seq: int
    job_id: int
    at: datetime
    kind: EventKind
    status: JobStatus | None
    details: str | None
    ignored: bool


class EventNote(msgspec.Struct, frozen=True, gc=False):
    """What a write records; the store adds the id, seq and time."""

    kind: EventKind
    status: JobStatus | None = None
    details: str | None = None
    ignored: bool = False

    def __post_init__(self) -> None:
        # A worker's log lines: never refused for their characters, bounded like the job's own.
        details = append_runtime_details(None, self.details, MAX_EVENT_DETAILS) if self.details else None
        msgspec.structs.force_setattr(self, "details", details)
