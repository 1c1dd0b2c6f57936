"""Issue 13, live updates, in memory: one read per change however many watch, nothing missed on
resume or after the feed's outage, a slow watcher ended rather than buffered, shutdown ends all."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from decode_userapi.adapters.feed.memory import InProcessChangeFeed
from decode_userapi.adapters.jobs.memory import InMemoryJobStore
from decode_userapi.domain.commands import ApplicationSpec
from decode_userapi.domain.errors import InvalidRequest, StoreUnavailable, Unauthenticated
from decode_userapi.domain.events import JobEvent
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.jobs import Job, JobAttributes, JobStatus
from decode_userapi.domain.stream import resume_point, whole_writes
from decode_userapi.entrypoints.http.stream import event_stream, frames, streams_end_on_exit_signals, watched_stream
from decode_userapi.services.stream import BEHIND, CLOSING, Delivery, StreamService

ALICE, BOB = Principal("alice", None, ("users",)), Principal("bob", None, ("users",))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class CountingStore:
    """The in-memory store, counting the reads the streams make (and failing some, when told)."""

    def __init__(self, store: InMemoryJobStore) -> None:
        self.store = store
        self.reads: dict[str, int] = {"events_since": 0, "get": 0, "changes": 0, "list_for_user": 0}
        self.failures = 0  # events_since calls still to fail

    async def events_since(self, user_id: str, after_seq: int, limit: int) -> list[JobEvent]:
        self.reads["events_since"] += 1
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the database is down")
        return await self.store.events_since(user_id, after_seq, limit)

    async def get(self, job_id: int) -> Job | None:
        self.reads["get"] += 1
        return await self.store.get(job_id)

    async def changes(self, user_id: str) -> int:
        self.reads["changes"] += 1
        return await self.store.changes(user_id)

    async def list_for_user(self, user_id: str, *, offset: int, limit: int) -> list[Job]:
        self.reads["list_for_user"] += 1
        return await self.store.list_for_user(user_id, offset=offset, limit=limit)


class Setup(msgspec.Struct):
    store: InMemoryJobStore
    counting: CountingStore
    feed: InProcessChangeFeed
    service: StreamService


async def make(backlog: int = 100, notify: bool = True) -> Setup:
    feed = InProcessChangeFeed()
    store = InMemoryJobStore(on_change=feed.notify if notify else None)
    counting = CountingStore(store)
    service = StreamService(counting, feed, backlog=backlog, retry_cap=0.05)  # type: ignore[arg-type]
    await service.start()
    await feed.start()
    return Setup(store, counting, feed, service)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    s = await make()
    yield s
    s.service.close()


def job(name: str, user: str = "alice") -> Job:
    return Job(
        user_id=user,
        user_email=None,
        job_name=name,
        environment=None,
        priority=0,
        application=ApplicationSpec(application="decode", version="v0_10_1", entrypoint="train"),
        attributes=JobAttributes(),
        hardware=None,
        date_created=T0,
    )


async def add(store: InMemoryJobStore, name: str, user: str = "alice") -> Job:
    return await store.add_with_dispatch(job(name, user), {})


async def run(store: InMemoryJobStore, added: Job) -> Job:
    after = msgspec.structs.replace(added, status=JobStatus.running, date_started=T0)
    assert await store.replace_status(added, after)
    return after


def decoded(delivery: Delivery) -> dict[str, Any]:
    return msgspec.json.decode(delivery.data)


async def test_a_change_is_read_once_for_every_watcher_of_its_user(setup: Setup) -> None:
    watches = [await setup.service.open(ALICE, None) for _ in range(100)]
    assert setup.counting.reads == {"events_since": 0, "get": 0, "changes": 1, "list_for_user": 0}  # opening costs one read, once
    added = await add(setup.store, "one")
    batches = [await w.next(1.0) for w in watches]
    assert all(len(b) == 1 and b[0] is batches[0][0] for b in batches)  # the same message, encoded once
    message = decoded(batches[0][0])
    assert (message["kind"], message["job_id"], message["job"]["job_name"]) == ("created", added.id, "one")
    assert setup.counting.reads == {"events_since": 1, "get": 1, "changes": 1, "list_for_user": 0}
    assert setup.service.watching == 100
    for w in watches:
        w.close()
    assert setup.service.watching == 0


async def test_other_users_see_nothing_and_unwatched_users_cost_nothing(setup: Setup) -> None:
    bobs = await setup.service.open(BOB, None)
    reads = dict(setup.counting.reads)
    await run(setup.store, await add(setup.store, "alices"))
    assert await bobs.next(0.05) == []
    assert setup.counting.reads == reads


async def test_resume_reads_what_was_missed_then_goes_live_without_duplicates(setup: Setup) -> None:
    first = await add(setup.store, "first")
    running = await run(setup.store, first)
    second = await add(setup.store, "second")
    live = await setup.service.open(ALICE, None)  # from now on
    resumed = await setup.service.open(ALICE, 0)  # everything
    got = await resumed.next(1.0)
    assert [(decoded(d)["kind"], decoded(d)["job_id"]) for d in got] == [
        ("created", first.id),
        ("status", first.id),
        ("created", second.id),
    ]
    assert decoded(got[1])["job"]["status"] == running.status.value
    await run(setup.store, second)
    for watch in (live, resumed):
        (status,) = await watch.next(1.0)
        assert (decoded(status)["kind"], decoded(status)["job_id"]) == ("status", second.id)
    assert await resumed.next(0.05) == []  # the catch-up and the live read overlapped: nothing twice
    # Resuming after the second event sends the third on.
    later = await setup.service.open(ALICE, got[1].seq)
    assert [decoded(d)["job_id"] for d in await later.next(1.0)] == [second.id, second.id]


async def test_a_long_catch_up_reads_the_jobs_in_one_listing(setup: Setup) -> None:
    added = [await add(setup.store, f"j{n}") for n in range(30)]
    async with setup.store.unit_of_work() as uow:
        await uow.delete(added[0].id)  # type: ignore[arg-type]
    watch = await setup.service.open(ALICE, 0)
    got = await watch.next(1.0)
    assert [decoded(d)["job_id"] for d in got] == [j.id for j in added[1:]] + [added[0].id]  # a deletion leaves one event
    assert [decoded(d)["job"] is None for d in got] == [False] * 29 + [True]
    assert decoded(got[4])["job"]["job_name"] == "j5"
    assert setup.counting.reads["list_for_user"] == 1 and setup.counting.reads["get"] == 0


async def test_a_watcher_that_does_not_keep_up_is_ended(setup: Setup) -> None:
    s = await make(backlog=3)
    slow, quick = await s.service.open(ALICE, None), await s.service.open(ALICE, None)
    for n in range(4):
        await add(s.store, f"j{n}")
        assert len(await quick.next(1.0)) == 1
    assert slow.ended == BEHIND and await slow.next(1.0) == []
    assert quick.ended is None and s.service.watching == 1


async def test_close_ends_every_watch_and_refuses_new_ones(setup: Setup) -> None:
    watch = await setup.service.open(ALICE, None)
    waiting = asyncio.create_task(watch.next(10.0))
    await asyncio.sleep(0)
    setup.service.close_threadsafe()  # as the signal handler does
    assert await asyncio.wait_for(waiting, 1.0) == [] and watch.ended == CLOSING
    assert (await setup.service.open(ALICE, None)).ended == CLOSING


async def test_after_the_feed_reconnects_every_watched_user_is_read_again() -> None:
    s = await make(notify=False)  # a feed that misses every change, as during an outage
    watch = await s.service.open(ALICE, None)
    added = await add(s.store, "missed")
    assert await watch.next(0.05) == []
    await s.feed.start()  # listening again: on_reset
    (created,) = await watch.next(1.0)
    assert decoded(created)["job_id"] == added.id


async def test_a_failed_read_is_retried(setup: Setup) -> None:
    watch = await setup.service.open(ALICE, None)
    setup.counting.failures = 2
    added = await add(setup.store, "retried")
    (created,) = await watch.next(2.0)
    assert decoded(created)["job_id"] == added.id
    assert setup.counting.reads["events_since"] == 3


async def test_a_deleted_job_has_no_view(setup: Setup) -> None:
    added = await add(setup.store, "gone")
    watch = await setup.service.open(ALICE, None)
    async with setup.store.unit_of_work() as uow:
        await uow.delete(added.id)  # type: ignore[arg-type]
    (deleted,) = await watch.next(1.0)
    assert (decoded(deleted)["kind"], decoded(deleted)["job"]) == ("delete", None)


def event(seq: int, id: int) -> JobEvent:
    return JobEvent(id=id, seq=seq, job_id=1, at=T0, kind="status", status=JobStatus.running, details=None, ignored=False)


def test_a_full_page_keeps_whole_writes_only() -> None:
    page = [event(1, 1), event(2, 2), event(2, 3), event(3, 4)]
    assert whole_writes(page, 5) == page  # not full: everything there was
    assert [e.id for e in whole_writes(page, 4)] == [1, 2, 3]  # seq 3 may go on in the next page
    assert [e.id for e in whole_writes([event(4, 5), event(4, 6)], 2)] == [5, 6]  # one write: sent as read


def test_frames_mark_the_last_message_of_each_write_with_its_seq() -> None:
    batch = [Delivery(5, 1, "status", b"{}"), Delivery(7, 2, "dispatch", b"{}"), Delivery(7, 3, "status", b"{}")]
    assert frames(batch) == (
        b"id: 5\nevent: status\ndata: {}\n\n"
        b"event: dispatch\ndata: {}\n\n"
        b"id: 7\nevent: status\ndata: {}\n\n"
    )


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [(None, None, None), ("", None, None), ("12", "3", 12), (None, "3", 3), (" 0 ", None, 0)],
)
def test_the_resume_point(header: str | None, query: str | None, expected: int | None) -> None:
    assert resume_point(header, query) == expected


@pytest.mark.parametrize("bad", ["-1", "1e3", "x", "٣", str(2**63)])
def test_a_resume_point_that_is_not_ours_is_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        resume_point(bad, None)


class ExpiringUsers:
    def __init__(self) -> None:
        self.valid = True

    async def authenticate(self, token: str) -> Principal:
        if not self.valid:
            raise Unauthenticated("the token has expired")
        return ALICE


async def test_the_stream_keeps_alive_and_ends_when_the_token_expires(setup: Setup) -> None:
    watch = await setup.service.open(ALICE, None)
    users = ExpiringUsers()
    stream = event_stream(watch, users, "token", keep_alive=0.02)  # type: ignore[arg-type]
    assert (await anext(stream)).startswith(b"retry: ")
    assert await anext(stream) == b": keep-alive\n\n"
    await add(setup.store, "during")
    assert (await anext(stream)).startswith(b"id: ")
    users.valid = False
    assert await anext(stream) == b'event: expired\ndata: {"detail":"the token has expired"}\n\n'
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert setup.service.watching == 0


async def test_a_stream_dropped_before_its_first_byte_still_closes_its_watch(setup: Setup) -> None:
    stream = watched_stream(await setup.service.open(ALICE, None), ExpiringUsers(), "token", 15.0)  # type: ignore[arg-type]
    assert setup.service.watching == 1
    del stream  # never iterated: its `finally` never runs
    gc.collect()
    await asyncio.sleep(0)
    assert setup.service.watching == 0


class ClosingRecorder:
    def __init__(self) -> None:
        self.closed = 0

    def close_threadsafe(self) -> None:
        self.closed += 1


def test_an_exit_signal_ends_the_streams_then_does_what_it_did_before() -> None:
    received: list[int] = []

    def before(signum: int, frame: object) -> None:
        received.append(signum)

    original = signal.signal(signal.SIGTERM, before)
    try:
        stream = ClosingRecorder()
        with streams_end_on_exit_signals(stream):  # type: ignore[arg-type]
            signal.raise_signal(signal.SIGTERM)
        assert (stream.closed, received) == (1, [signal.SIGTERM])
        assert signal.getsignal(signal.SIGTERM) is before  # put back as it was
    finally:
        signal.signal(signal.SIGTERM, original)
