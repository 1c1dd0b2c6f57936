"""The JobStore's event history, run against every adapter (memory, SQLite, PostgreSQL): what each
write records, the `seq` each event takes from the owner's change counter, paging, deletion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
import pytest

from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from decode_userapi.domain.events import CANCEL, CREATED, DELETE, DISPATCH, STATUS, EventNote, JobEvent
from decode_userapi.domain.jobs import DispatchStatus, JobStatus
from decode_userapi.ports.jobs import DispatchResult, JobStore
from tests.integration import test_job_store
from tests.integration.test_job_store import T0, add, claim, make_job, record

store = test_job_store.store  # the fixture: every adapter, a fresh database each


def shape(events: list[JobEvent]) -> list[tuple[str, str | None, str | None, bool]]:
    return [(e.kind, e.status and e.status.value, e.details, e.ignored) for e in events]


async def test_every_write_records_its_event_with_the_seq_of_the_write(store: JobStore) -> None:
    before = datetime.now(UTC)
    (job,) = await add(store, make_job())
    assert job.id is not None
    (entry,) = await claim(store)
    assert await record(store, entry, DispatchResult(DispatchStatus.pending, 1, "HTTP 503", 30))
    running = msgspec.structs.replace(job, status=JobStatus.running, date_started=T0, runtime_details="go")
    assert await store.replace_status(job, running, details="go")
    assert not await store.replace_status(job, running, details="lost")  # a lost compare-and-set records nothing
    counter = await store.changes("alice")
    await store.add_event(job.id, "alice", EventNote(STATUS, JobStatus.pulled, "late", ignored=True))
    assert await store.changes("alice") == counter  # an ignored event bumps nothing
    async with store.unit_of_work() as uow:
        canceled = msgspec.structs.replace(running, status=JobStatus.canceled, date_finished=T0)
        await uow.save(canceled)
        assert await uow.cancel_dispatch(job.id)  # retrying: still pending
    events = await store.events_for_job(job.id, "alice", limit=100)
    assert shape(events) == [
        (CREATED, "queued", None, False),
        (DISPATCH, None, "attempt 1 failed, retrying in 30 s: HTTP 503", False),
        (STATUS, "running", "go", False),
        (STATUS, "pulled", "late", True),
    ]
    ids, seqs = [e.id for e in events], [e.seq for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert seqs[:3] == sorted(seqs[:3]) and len(set(seqs[:3])) == 3 and seqs[3] == counter >= seqs[2]
    assert all(before <= e.at <= datetime.now(UTC) and e.at.tzinfo is UTC and e.job_id == job.id for e in events)
    assert await store.events_for_job(job.id, "bob", limit=100) == []  # someone else's job
    assert await store.events_since("alice", 0, 100) == [e for e in events if not e.ignored]
    assert await store.events_since("alice", seqs[1], 100) == [events[2]]


async def test_cancel_dispatch_drops_a_pending_entry_and_fences_its_lease_holder(store: JobStore) -> None:
    first, second = await add(store, make_job("a"), make_job("b"))
    entries = {e.job_id: e for e in await claim(store)}
    async with store.unit_of_work() as uow:
        assert await uow.cancel_dispatch(first.id)  # type: ignore[arg-type]
        assert not await uow.cancel_dispatch(first.id)  # type: ignore[arg-type]
        await uow.add_event(first.id, "alice", EventNote(CANCEL, JobStatus.canceled))  # type: ignore[arg-type]
    assert not await record(store, entries[first.id], DispatchResult(DispatchStatus.sent, 1))  # type: ignore[index]
    assert (await store.get(first.id)).dispatch.status is DispatchStatus.canceled  # type: ignore[arg-type, union-attr]
    assert await record(store, entries[second.id], DispatchResult(DispatchStatus.sent, 1))  # type: ignore[index]
    async with store.unit_of_work() as uow:
        assert not await uow.cancel_dispatch(second.id)  # type: ignore[arg-type]  # delivered already
    assert await claim(store) == []
    history = await store.events_for_job(first.id, "alice", limit=10)  # type: ignore[arg-type]
    assert shape(history) == [(CREATED, "queued", None, False), (CANCEL, "canceled", None, False)]


async def test_events_page_by_id_and_a_deleted_job_keeps_only_its_delete_event(store: JobStore) -> None:
    job, other = await add(store, make_job("a"), make_job("b"))
    current = job
    for i in range(5):
        after = msgspec.structs.replace(current, runtime_details=f"{current.runtime_details or ''}{i}")
        assert await store.replace_status(current, after, details=str(i))
        current = after
    everything = await store.events_for_job(job.id, "alice", limit=100)  # type: ignore[arg-type]
    assert len(everything) == 6
    pages, after_id = [], 0
    while page := await store.events_for_job(job.id, "alice", after=after_id, limit=4):  # type: ignore[arg-type]
        pages.append(page)
        after_id = page[-1].id
    assert [len(p) for p in pages] == [4, 2] and [e for p in pages for e in p] == everything
    async with store.unit_of_work() as uow:
        await uow.delete(job.id)  # type: ignore[arg-type]
    (tombstone,) = await store.events_for_job(job.id, "alice", limit=100)  # type: ignore[arg-type]
    assert (tombstone.kind, tombstone.ignored) == (DELETE, False) and tombstone.seq > everything[-1].seq
    streamed = await store.events_since("alice", 0, 100)
    assert [e.job_id for e in streamed] == [other.id, job.id] and streamed[-1] == tombstone
    assert len(await store.events_for_job(other.id, "alice", limit=100)) == 1  # type: ignore[arg-type]


async def test_on_change_is_told_after_commits_that_recorded_events(store_database_url: str | None) -> None:
    from decode_userapi.adapters.jobs.memory import InMemoryJobStore

    told: list[str] = []
    if store_database_url is None:
        store: JobStore = InMemoryJobStore(on_change=told.append)
    else:
        store = SqlJobStore(Database(store_database_url), on_change=told.append)
    await store.start()
    try:
        (job,) = await add(store, make_job())
        await store.add_event(job.id, "alice", EventNote(STATUS, JobStatus.pulled, ignored=True))  # type: ignore[arg-type]
        async with store.unit_of_work() as uow:
            await uow.delete(job.id)  # type: ignore[arg-type]
        postgres = store_database_url is not None and store_database_url.startswith("postgres")
        assert told == ([] if postgres else ["alice", "alice"])  # PostgreSQL: NOTIFY, by the trigger
    finally:
        await store.aclose()


@pytest.mark.postgres
async def test_seq_values_commit_in_order_under_concurrent_writes(postgres_database_url: str) -> None:
    """Many concurrent writes of one user's jobs, some in transactions held open a little after
    their event (so later events are recorded while earlier ones are not committed yet): at any
    moment, what `events_since(0)` shows is ordered and has no hole a later commit could fill (a
    stream resumed after the last seq it saw misses nothing). A seq taken from an identity or a
    sequence fails this: values are handed out at insert and commit in any order."""
    store = SqlJobStore(Database(postgres_database_url))
    await store.start()
    try:
        await _concurrent_updates(store)
    finally:
        await store.aclose()


async def _concurrent_updates(store: JobStore) -> None:
    jobs = await add(store, *(make_job(f"j{i}") for i in range(8)))
    done = asyncio.Event()
    snapshots: list[list[int]] = []

    async def watch() -> None:
        while not done.is_set():
            snapshots.append([e.seq for e in await store.events_since("alice", 0, 10_000)])
            await asyncio.sleep(0)

    async def drive(job):  # type: ignore[no-untyped-def]
        current = job
        for i in range(12):
            if i % 3 == 2:  # an event in a unit of work that commits a moment later
                async with store.unit_of_work() as uow:
                    await uow.add_event(job.id, "alice", EventNote(DISPATCH, details=str(i)))
                    await asyncio.sleep(0.003)
                continue
            after = msgspec.structs.replace(current, runtime_details=f"{current.runtime_details or ''}{i}")
            assert await store.replace_status(current, after, details=str(i))
            current = after

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(drive(job) for job in jobs))
    done.set()
    await watcher
    final = [e.seq for e in await store.events_since("alice", 0, 10_000)]
    assert len(final) == 8 + 8 * 12 and final == sorted(final) and len(set(final)) == len(final)
    for seen in snapshots:
        assert seen == final[: len(seen)]  # a prefix: nothing committed later sorts before it


async def test_prune_forgets_events_recorded_before_the_cutoff_in_batches(store: JobStore) -> None:
    """Retention: old events go whatever their job (a live job's history, a deleted job's `delete`
    event, an orphan an ignored update left racing a delete); newer ones stay."""
    kept, gone = await add(store, make_job("kept"), make_job("gone"))
    async with store.unit_of_work() as uow:
        await uow.delete(gone.id)  # type: ignore[arg-type]
    orphan_job = 10**9  # an ignored update of a job deleted meanwhile
    await store.add_event(orphan_job, "alice", EventNote(STATUS, JobStatus.running, "late", ignored=True))
    await asyncio.sleep(0.05)
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.05)
    (new,) = await add(store, make_job("new"))
    running = msgspec.structs.replace(kept, status=JobStatus.running, date_started=T0)
    assert await store.replace_status(kept, running, details="recent")
    assert await store.prune_events(cutoff, batch=2) == 3  # kept's `created`, gone's `delete`, the orphan
    assert await store.events_for_job(gone.id, "alice", limit=10) == []  # type: ignore[arg-type]
    assert await store.events_for_job(orphan_job, "alice", limit=10) == []
    assert shape(await store.events_for_job(kept.id, "alice", limit=10)) == [(STATUS, "running", "recent", False)]  # type: ignore[arg-type]
    assert len(await store.events_for_job(new.id, "alice", limit=10)) == 1  # type: ignore[arg-type]
    assert await store.prune_events(cutoff) == 0
    assert [e.job_id for e in await store.events_since("alice", 0, 100)] == [new.id, kept.id]


async def test_the_store_prunes_expired_events_in_the_background(store_database_url: str | None) -> None:
    if store_database_url is None:
        pytest.skip("the SQL store's own task; the memory store keeps what its owner keeps")
    store = SqlJobStore(Database(store_database_url), event_retention=0.05, prune_interval=0.05)
    await store.start()
    try:
        (job,) = await add(store, make_job())
        async with store.unit_of_work() as uow:
            await uow.delete(job.id)  # type: ignore[arg-type]
        for _ in range(100):  # pruned within 5 s
            if not await store.events_for_job(job.id, "alice", limit=10):  # type: ignore[arg-type]
                break
            await asyncio.sleep(0.05)
        assert await store.events_for_job(job.id, "alice", limit=10) == []  # type: ignore[arg-type]
    finally:
        await store.aclose()


@pytest.mark.postgres
async def test_replicas_pruning_at_once_share_the_work(postgres_database_url: str) -> None:
    """Two stores (two replicas) prune one database at the same moment, in small batches: every
    expired event is deleted once between them, neither fails, the newer ones stay."""
    first, second = SqlJobStore(Database(postgres_database_url)), SqlJobStore(Database(postgres_database_url))
    await first.start()
    await second.start()
    try:
        for i in range(12):
            await first.add_event(i + 1, "alice", EventNote(STATUS, JobStatus.running, str(i)))
        await asyncio.sleep(0.05)
        cutoff = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await first.add_event(99, "alice", EventNote(STATUS, JobStatus.running, "new"))
        counts = await asyncio.gather(*(store.prune_events(cutoff, batch=2) for store in (first, second, first, second)))
        assert sum(counts) + await first.prune_events(cutoff) == 12
        assert [e.details for e in await second.events_since("alice", 0, 100)] == ["new"]
    finally:
        await first.aclose()
        await second.aclose()


async def test_trim_bounds_each_jobs_history_and_looks_again_only_at_jobs_with_new_events(store: JobStore) -> None:
    chatty, quiet = await add(store, make_job("chatty"), make_job("quiet"))
    current = chatty
    for i in range(6):  # a worker's updates: created + 6 status events
        after = msgspec.structs.replace(current, runtime_details=f"{current.runtime_details or ''}{i}")
        assert await store.replace_status(current, after, details=str(i))
        current = after
    trimmed, seen = await store.trim_events(3, after_id=0)
    history = await store.events_for_job(chatty.id, "alice", limit=100)  # type: ignore[arg-type]
    assert trimmed == 3 and shape(history)[0] == (CREATED, "queued", None, False)  # `created` stays
    assert [e.details for e in history[1:]] == ["3", "4", "5"]
    assert seen == max(e.id for e in await store.events_since("alice", 0, 100))
    assert len(await store.events_for_job(quiet.id, "alice", limit=100)) == 1  # type: ignore[arg-type]
    assert await store.trim_events(3, after_id=seen) == (0, seen)  # nothing new: nothing looked at
    after = msgspec.structs.replace(current, runtime_details="x")
    assert await store.replace_status(current, after, details="6")
    trimmed, newer = await store.trim_events(3, after_id=seen)
    assert trimmed == 1 and newer > seen
    assert [e.details for e in await store.events_for_job(chatty.id, "alice", limit=100)][1:] == ["4", "5", "6"]  # type: ignore[arg-type]


async def test_the_store_trims_long_histories_in_the_background(store_database_url: str | None) -> None:
    if store_database_url is None:
        pytest.skip("the SQL store's own task")
    store = SqlJobStore(Database(store_database_url), event_retention=3600, prune_interval=0.05, events_per_job=2)
    await store.start()
    try:
        (job,) = await add(store, make_job())
        current = job
        for i in range(4):
            after = msgspec.structs.replace(current, runtime_details=str(i))
            assert await store.replace_status(current, after, details=str(i))
            current = after
        for _ in range(100):  # trimmed within 5 s
            history = await store.events_for_job(job.id, "alice", limit=10)  # type: ignore[arg-type]
            if len(history) == 3:
                break
            await asyncio.sleep(0.05)
        assert [e.details for e in history] == [None, "2", "3"]
    finally:
        await store.aclose()
