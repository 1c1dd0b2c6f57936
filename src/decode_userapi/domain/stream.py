"""The live stream of a user's job events (GET /jobs/events/stream): what one message carries, and
where a stream resumes (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from decode_userapi.domain.commands import JobView
from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.events import EventKind, JobEvent
from decode_userapi.domain.jobs import Job, JobStatus

# The largest `seq` a client may resume after (PostgreSQL's BIGINT): a larger one is not an id we sent.
MAX_SEQ = 2**63 - 1


class StreamEventView(msgspec.Struct, kw_only=True, gc=False):  # see domain.jobs on gc=False
    """One message of the live stream: the event (as `GET /jobs/{id}/events` lists it, less
    `ignored`: the stream sends no ignored events), and the job as it is now, read after the event
    (`null` once deleted), so a page can update its row without another request."""

    id: int
    seq: int
    job_id: int
    at: datetime
    kind: EventKind
    status: JobStatus | None
    details: str | None
    job: JobView | None

    @classmethod
    def of(cls, event: JobEvent, job: Job | None) -> StreamEventView:
        return cls(
            id=event.id,
            seq=event.seq,
            job_id=event.job_id,
            at=event.at,
            kind=event.kind,
            status=event.status,
            details=event.details,
            job=None if job is None else JobView.of(job),
        )


def whole_writes(events: Sequence[JobEvent], limit: int) -> Sequence[JobEvent]:
    """The events of a page read with `limit` (in (seq, id) order) that can be sent without losing
    any: the events of one write share a `seq`, and the next page starts after a `seq`, so a full
    page keeps only the writes it holds whole (all but its last `seq`), unless that would be none
    (one write of more events than `limit`: sent as read)."""
    if len(events) < limit or not events:
        return events
    last = events[-1].seq
    whole = [e for e in events if e.seq != last]
    return whole or events


def resume_point(header: str | None, query: str | None) -> int | None:
    """The `seq` a stream resumes after: the `Last-Event-ID` header (what a browser's EventSource
    sends on reconnecting), else the `last_event_id` query parameter; None for neither (start now).
    `InvalidRequest` unless it is an id this stream sends (a whole number, 0 or more)."""
    value = header if header is not None and header.strip() else query
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_SEQ:
        raise InvalidRequest("Last-Event-ID (or last_event_id) must be an id the stream sent: a whole number, 0 or more")
    return int(text)
