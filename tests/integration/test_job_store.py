"""The JobStore contract, run against every adapter: in memory, SQL on SQLite, SQL on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from decode_userapi.adapters.jobs.memory import InMemoryJobStore
from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from decode_userapi.domain.commands import JobFilter
from decode_userapi.domain.errors import JobNameTaken, NotFound
from decode_userapi.domain.jobs import (
    ApplicationSpec,
    DispatchState,
    DispatchStatus,
    FilesDown,
    HardwareSpec,
    Job,
    JobAttributes,
    JobStatus,
)
from decode_userapi.ports.jobs import DispatchResult, JobStats, JobStore, PendingDispatch

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def store(store_database_url: str | None) -> AsyncIterator[JobStore]:
    store = InMemoryJobStore() if store_database_url is None else SqlJobStore(Database(store_database_url))
    await store.start()
    yield store
    await store.aclose()


def make_job(name: str = "job", user: str = "alice", created: datetime = T0, **fields: object) -> Job:
    values: dict[str, object] = {
        "user_id": user,
        "user_email": f"{user}@example.org",
        "job_name": name,
        "environment": None,
        "priority": 0,
        "application": ApplicationSpec(application="decode", version="v0_10_1", entrypoint="train"),
        "attributes": JobAttributes(),
        "hardware": None,
        "date_created": created,
    }
    return Job(**(values | fields))  # type: ignore[arg-type]


async def add(store: JobStore, *jobs: Job) -> list[Job]:
    return [await store.add_with_dispatch(job, PAYLOAD) for job in jobs]


async def get(store: JobStore, job_id: int) -> Job | None:
    async with store.unit_of_work() as uow:
        return await uow.get(job_id)


async def names(store: JobStore, user: str = "alice", *, offset: int = 0, limit: int = 100) -> list[str]:
    return [job.job_name for job in await store.list_for_user(user, offset=offset, limit=limit)]


def as_added(job: Job, added: Job) -> Job:
    """`job` as the store returns it once added: with its id and its outbox entry's state."""
    return msgspec.structs.replace(job, id=added.id, dispatch=added.dispatch)


async def test_add_assigns_increasing_ids_and_leaves_the_argument_alone(store: JobStore) -> None:
    jobs = [make_job(f"j{i}") for i in range(3)]
    added = await add(store, *jobs)
    ids = [job.id for job in added]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids) and len(set(ids)) == 3
    assert [job.id for job in jobs] == [None, None, None]
    assert added[0] == as_added(jobs[0], added[0])


async def test_ids_are_not_reused_after_delete(store: JobStore) -> None:
    first, second = await add(store, make_job("a"), make_job("b"))
    async with store.unit_of_work() as uow:
        await uow.delete(second.id)  # type: ignore[arg-type]
    (third,) = await add(store, make_job("c"))
    assert third.id > second.id > first.id  # type: ignore[operator]


async def test_get_round_trips_every_field(store: JobStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    full = make_job(
        "full",
        user="bob",
        created=datetime(2026, 3, 1, 14, 0, 0, 654321, tzinfo=plus_two),
        user_email=None,
        environment="cloud",
        priority=5,
        application=ApplicationSpec(application="decode", version="v0_11", entrypoint="fit"),
        attributes=JobAttributes(
            files_down=FilesDown(config_id="cfg", data_ids=["d1", "sub/d2"], artifact_ids=["model"]),
            env_vars={"B": "2", "A": "x y", "EMPTY": ""},
        ),
        hardware=HardwareSpec(cpu_cores=8, memory=64000, gpu_model="A100", gpu_archi="ampere", gpu_mem=40),
        status=JobStatus.running,
        date_started=datetime(2026, 3, 1, 12, 5, 1, 1, tzinfo=UTC),
        date_finished=datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=-5))),
        runtime_details="line 1\nline 2 ✓",
    )
    bare = make_job("bare", hardware=None)
    empty_hardware = make_job("empty-hardware", hardware=HardwareSpec())
    for job in (full, bare, empty_hardware):
        (added,) = await add(store, job)
        stored = await get(store, added.id)  # type: ignore[arg-type]
        assert stored == as_added(job, added)
        for when in (stored.date_created, stored.date_started, stored.date_finished):  # type: ignore[union-attr]
            assert when is None or when.utcoffset() == timedelta(0)


async def test_a_job_name_is_taken_per_user(store: JobStore) -> None:
    await add(store, make_job("train-1"))
    with pytest.raises(JobNameTaken, match="train-1"):
        await add(store, make_job("train-1", created=T0 + timedelta(seconds=1)))
    await add(store, make_job("train-1", user="bob"), make_job("train-2", created=T0 + timedelta(seconds=1)))
    assert await names(store) == ["train-2", "train-1"]
    assert await names(store, "bob") == ["train-1"]
    with pytest.raises(JobNameTaken):
        await add(store, make_job("train-1"))


async def test_a_deleted_jobs_name_can_be_used_again(store: JobStore) -> None:
    (job,) = await add(store, make_job("again"))
    async with store.unit_of_work() as uow:
        await uow.delete(job.id)  # type: ignore[arg-type]
    (again,) = await add(store, make_job("again"))
    assert again.id != job.id


async def test_list_is_newest_first_then_paged(store: JobStore) -> None:
    await add(
        store,
        make_job("middle", created=T0 + timedelta(minutes=1)),
        make_job("oldest", created=T0),
        make_job("newest", created=T0 + timedelta(minutes=2)),
        make_job("tie-first", created=T0 + timedelta(minutes=1)),  # same time as "middle", larger id
        make_job("bobs", user="bob", created=T0 + timedelta(hours=1)),
    )
    assert await names(store) == ["newest", "tie-first", "middle", "oldest"]
    assert await names(store, limit=1) == ["newest"]
    assert await names(store, offset=1, limit=2) == ["tie-first", "middle"]
    assert await names(store, offset=4) == []
    assert await names(store, "bob") == ["bobs"]
    assert await names(store, "nobody") == []


async def test_save_persists_status_dates_and_details(store: JobStore) -> None:
    (job,) = await add(store, make_job())
    started, finished = T0 + timedelta(seconds=5), T0 + timedelta(minutes=5)
    async with store.unit_of_work() as uow:
        current = await uow.get(job.id, for_update=True)  # type: ignore[arg-type]
        assert current is not None
        current.status, current.date_started = JobStatus.pulled, started
        current.runtime_details = "pulled by worker 7"
        await uow.save(current)
        current.status, current.date_finished = JobStatus.finished, finished
        await uow.save(current)
    assert await get(store, job.id) == msgspec.structs.replace(  # type: ignore[arg-type]
        job,
        status=JobStatus.finished,
        date_started=started,
        date_finished=finished,
        runtime_details="pulled by worker 7",
    )


async def test_callers_hold_copies(store: JobStore) -> None:
    job = make_job(attributes=JobAttributes(env_vars={"A": "1"}))
    (added,) = await add(store, job)
    job.attributes.env_vars["A"] = "changed"
    added.attributes.env_vars["A"] = "changed"
    async with store.unit_of_work() as uow:
        read = await uow.get(added.id)  # type: ignore[arg-type]
        read.attributes.files_down.data_ids.append("changed")  # type: ignore[union-attr]
        read.status = JobStatus.error  # type: ignore[union-attr]
    stored = await get(store, added.id)  # type: ignore[arg-type]
    assert stored.attributes == JobAttributes(env_vars={"A": "1"})  # type: ignore[union-attr]
    assert stored.status is JobStatus.queued  # type: ignore[union-attr]


async def test_an_exception_rolls_everything_back(store: JobStore) -> None:
    kept, doomed = await add(store, make_job("kept"), make_job("doomed"))
    with pytest.raises(RuntimeError, match="boom"):  # noqa: PT012 - the whole unit of work is what raises
        async with store.unit_of_work() as uow:
            current = await uow.get(kept.id, for_update=True)  # type: ignore[arg-type]
            current.status = JobStatus.error  # type: ignore[union-attr]
            await uow.save(current)  # type: ignore[arg-type]
            await uow.delete(doomed.id)  # type: ignore[arg-type]
            raise RuntimeError("boom")
    assert sorted(await names(store)) == ["doomed", "kept"]
    assert await get(store, kept.id) == kept  # type: ignore[arg-type]


async def test_delete_and_missing_jobs(store: JobStore) -> None:
    (job,) = await add(store, make_job())
    async with store.unit_of_work() as uow:
        await uow.delete(job.id)  # type: ignore[arg-type]
        assert await uow.get(job.id) is None  # type: ignore[arg-type]
        await uow.delete(job.id)  # type: ignore[arg-type]  # deleting a missing job is not an error
        assert await uow.get(987654, for_update=True) is None
        with pytest.raises(NotFound):
            await uow.save(job)
    assert await get(store, job.id) is None  # type: ignore[arg-type]
    assert await names(store) == []


async def test_for_update_serialises_read_modify_write(store: JobStore) -> None:
    (job,) = await add(store, make_job())

    async def append(line: str) -> None:
        async with store.unit_of_work() as uow:
            current = await uow.get(job.id, for_update=True)  # type: ignore[arg-type]
            assert current is not None
            await asyncio.sleep(0.001)  # let the others run between the read and the write
            current.runtime_details = f"{current.runtime_details}\n{line}" if current.runtime_details else line
            await uow.save(current)

    await asyncio.gather(*(append(f"update {i}") for i in range(20)))
    stored = await get(store, job.id)  # type: ignore[arg-type]
    assert sorted(stored.runtime_details.split("\n")) == sorted(f"update {i}" for i in range(20))  # type: ignore[union-attr]


# --- the outbox: dispatch entries recorded with the job, claimed under fenced leases ---------------

PAYLOAD = {"job": {"meta": {"job_id": 0}}, "files": [f"data/f{i}" for i in range(3)]}
SENT = DispatchResult(DispatchStatus.sent, 1)


async def enqueue(store: JobStore, *names_: str) -> list[Job]:
    return [await store.add_with_dispatch(make_job(name), {**PAYLOAD, "name": name}) for name in names_]


async def claim(store: JobStore, lease: float = 60, limit: int = 10) -> list[PendingDispatch]:
    async with store.unit_of_work() as uow:
        return await uow.claim_dispatches(lease, limit)


async def record(store: JobStore, entry: PendingDispatch, result: DispatchResult) -> bool:
    async with store.unit_of_work() as uow:
        return await uow.record_dispatch(entry, result)


async def test_outbox_entries_are_claimed_once_per_lease(store: JobStore) -> None:
    jobs = await enqueue(store, "a", "b")
    claimed = await claim(store, lease=0.3)
    assert sorted(c.job_id for c in claimed) == sorted(j.id for j in jobs)
    assert {c.payload["name"] for c in claimed} == {"a", "b"}
    assert all(c.attempts == 0 and c.date_created == T0 for c in claimed)
    assert await claim(store) == []
    await asyncio.sleep(0.4)  # a sender that died: its lease runs out, the entry is claimed again
    again = await claim(store)
    assert len(again) == 2 and {c.lease for c in again}.isdisjoint({c.lease for c in claimed})


async def test_outbox_outcomes(store: JobStore) -> None:
    sent, retried = await enqueue(store, "sent", "retried")
    by_id = {c.job_id: c for c in await claim(store)}
    before = datetime.now(UTC)
    assert await record(store, by_id[sent.id], SENT) is True  # type: ignore[index]
    assert await record(store, by_id[retried.id], DispatchResult(DispatchStatus.pending, 1, "HTTP 503", 0.5))  # type: ignore[index]
    assert (await get(store, sent.id)).dispatch == DispatchState(DispatchStatus.sent, 1)  # type: ignore[arg-type, union-attr]
    state = (await get(store, retried.id)).dispatch  # type: ignore[arg-type, union-attr]
    assert (state.status, state.attempts, state.last_error) == (DispatchStatus.pending, 1, "HTTP 503")
    # Due by the store's clock: 0.5 s from when it was recorded.
    assert before + timedelta(seconds=0.4) < state.next_attempt_at < datetime.now(UTC) + timedelta(seconds=0.6)  # type: ignore[operator]
    assert await claim(store) == []
    await asyncio.sleep(0.6)
    (again,) = await claim(store)
    assert again.job_id == retried.id and again.attempts == 1
    # Status updates never touch the dispatch state.
    async with store.unit_of_work() as uow:
        job = await uow.get(sent.id, for_update=True)  # type: ignore[arg-type]
        job.status = JobStatus.running  # type: ignore[union-attr]
        await uow.save(job)  # type: ignore[arg-type]
    assert (await get(store, sent.id)).dispatch.status is DispatchStatus.sent  # type: ignore[arg-type, union-attr]


async def test_a_late_record_after_the_lease_was_taken_over_is_refused(store: JobStore) -> None:
    (job,) = await enqueue(store, "fenced")
    (first,) = await claim(store, lease=0.2)
    await asyncio.sleep(0.3)  # the first sender stalls past its lease
    (second,) = await claim(store)
    assert second.lease != first.lease
    assert await record(store, second, DispatchResult(DispatchStatus.pending, 1, "HTTP 503", 60)) is True
    # The stalled sender wakes up and reports success: refused, the new holder's record stands.
    assert await record(store, first, SENT) is False
    assert await record(store, first, DispatchResult(DispatchStatus.failed, 1, "late")) is False
    state = (await get(store, job.id)).dispatch  # type: ignore[arg-type, union-attr]
    assert (state.status, state.attempts, state.last_error) == (DispatchStatus.pending, 1, "HTTP 503")


async def test_deleting_a_job_drops_its_outbox_entry(store: JobStore) -> None:
    (job,) = await enqueue(store, "gone")
    (entry,) = await claim(store)
    async with store.unit_of_work() as uow:
        await uow.delete(job.id)  # type: ignore[arg-type]
    assert await claim(store) == []
    assert await record(store, entry, SENT) is False  # recording an outcome for a deleted job is harmless


async def test_concurrent_claims_never_share_an_entry(store: JobStore) -> None:
    await enqueue(store, *(f"j{i}" for i in range(30)))
    batches = await asyncio.gather(*(claim(store, limit=4) for _ in range(12)))
    ids = [c.job_id for batch in batches for c in batch]
    assert len(ids) == len(set(ids)) == 30


# --- single-statement paths: reads, submission with its outbox entry, compare-and-set -------------


async def test_every_read_path_maps_every_column_alike(store: JobStore) -> None:
    """The single-statement reads (asyncpg's fast path on PostgreSQL) and the unit of work's reads
    (SQLAlchemy) run the same statements: they must agree on every field of every job."""
    jobs = await add(
        store,
        make_job(
            "full",
            environment="local",
            priority=3,
            attributes=JobAttributes(files_down=FilesDown(config_id="c", data_ids=["d"]), env_vars={"K": "v"}),
            hardware=HardwareSpec(cpu_cores=2, gpu_model="T4"),
            status=JobStatus.postprocessing,
            date_started=T0 + timedelta(seconds=1),
            date_finished=T0 + timedelta(seconds=2),
            runtime_details="a\nb",
        ),
        make_job("bare", user_email=None, created=T0 + timedelta(seconds=1)),
    )
    (entry,) = [c for c in await claim(store) if c.job_id == jobs[1].id] or [None]
    if entry is not None:  # a dispatch state with an error and a due time, too
        await record(store, entry, DispatchResult(DispatchStatus.pending, 1, "HTTP 503 ✓", 30))
    listed = {j.id: j for j in await store.list_for_user("alice", offset=0, limit=10)}
    for job in jobs:
        async with store.unit_of_work() as uow:
            plain, locked = await uow.get(job.id), await uow.get(job.id, for_update=True)  # type: ignore[arg-type]
        fast = await store.get(job.id)  # type: ignore[arg-type]
        assert fast is not None
        for field in msgspec.structs.fields(Job):
            name = field.name
            assert getattr(fast, name) == getattr(plain, name) == getattr(locked, name) == getattr(listed[job.id], name), name
    assert (await store.get(jobs[1].id)).dispatch.last_error == "HTTP 503 ✓"  # type: ignore[arg-type, union-attr]


async def test_reads_outside_a_unit_of_work_see_what_units_of_work_committed(store: JobStore) -> None:
    older, _newer = await add(store, make_job("older"), make_job("newer", created=T0 + timedelta(seconds=1)))
    assert await store.get(older.id) == older  # type: ignore[arg-type]
    assert await store.get(987654) is None
    assert [j.job_name for j in await store.list_for_user("alice", offset=0, limit=10)] == ["newer", "older"]
    assert [j.job_name for j in await store.list_for_user("alice", offset=1, limit=10)] == ["older"]
    assert await store.list_for_user("bob", offset=0, limit=10) == []


async def test_add_with_dispatch_records_the_job_and_its_due_outbox_entry_at_once(store: JobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    job = await store.add_with_dispatch(make_job("sub"), PAYLOAD)  # created at T0, months ago
    assert job.id is not None and job.dispatch.status.value == "pending"
    # Due now by the store's clock, not by the date the creating replica wrote.
    assert before < job.dispatch.next_attempt_at <= datetime.now(UTC)  # type: ignore[operator]
    assert await store.get(job.id) == job
    (claimed,) = await claim(store)
    assert (claimed.job_id, claimed.payload, claimed.attempts, claimed.date_created) == (job.id, PAYLOAD, 0, T0)


async def test_add_with_dispatch_refuses_a_taken_name_and_records_nothing(store: JobStore) -> None:
    first = await store.add_with_dispatch(make_job("dup"), PAYLOAD)
    with pytest.raises(JobNameTaken):
        await store.add_with_dispatch(make_job("dup"), PAYLOAD)
    assert [j.id for j in await store.list_for_user("alice", offset=0, limit=10)] == [first.id]
    assert [c.job_id for c in await claim(store)] == [first.id]


async def test_replace_status_writes_only_over_the_state_it_was_computed_from(store: JobStore) -> None:
    (job,) = await add(store, make_job())
    running = msgspec.structs.replace(job, status=JobStatus.running, date_started=T0, runtime_details="go")
    assert await store.replace_status(job, running) is True
    assert await store.get(job.id) == running  # type: ignore[arg-type]
    late = msgspec.structs.replace(job, status=JobStatus.pulled, date_started=T0)  # computed from stale state
    assert await store.replace_status(job, late) is False
    assert await store.get(job.id) == running  # type: ignore[arg-type]
    async with store.unit_of_work() as uow:
        await uow.delete(job.id)  # type: ignore[arg-type]
    assert await store.replace_status(running, msgspec.structs.replace(running, status=JobStatus.finished)) is False


async def test_the_change_counter_moves_with_every_visible_write_and_nothing_else(store: JobStore) -> None:
    """`changes` is what `GET /jobs` derives its ETag from: every write a user can see moves it, in
    the write's own transaction; reads, a claim's lease and writes that do not happen leave it."""
    seen = [await store.changes("alice")]
    assert seen == [0]

    async def moved() -> None:
        now = await store.changes("alice")
        assert now not in seen, seen
        seen.append(now)

    async def still() -> None:
        assert await store.changes("alice") == seen[-1]
        # The reads that answer GET /jobs and GET /jobs/{id} carry the same counter.
        assert (await store.page_for_user("alice", offset=0, limit=1)).changes == seen[-1]
        assert (await store.get_with_changes(10**9, "alice")) == (None, seen[-1])

    job, other = await add(store, make_job("a"), make_job("b", created=T0 + timedelta(seconds=1)))
    await moved()
    got, changes = await store.get_with_changes(job.id, "alice")  # type: ignore[arg-type]
    assert got == await store.get(job.id) and changes == seen[-1]  # type: ignore[arg-type]
    await add(store, make_job("bob's", user="bob"))
    await still()
    with pytest.raises(JobNameTaken):
        await store.add_with_dispatch(make_job("a"), PAYLOAD)
    await still()
    await store.get(job.id)  # type: ignore[arg-type]
    await store.list_for_user("alice", offset=0, limit=10, filter=JobFilter(name="a"))
    entries = {e.job_id: e for e in await claim(store)}
    await still()  # a lease is no change anyone sees
    assert await record(store, entries[job.id], DispatchResult(DispatchStatus.pending, 1, "HTTP 503", 30))
    await moved()  # the job's dispatch state is part of it
    assert await record(store, entries[other.id], SENT)
    await moved()
    running = msgspec.structs.replace(job, status=JobStatus.running, date_started=T0)
    assert await store.replace_status(job, running)
    await moved()
    assert not await store.replace_status(job, running)  # lost compare-and-set: nothing written
    await still()
    async with store.unit_of_work() as uow:
        await uow.get(job.id, for_update=True)  # type: ignore[arg-type]
    await still()
    async with store.unit_of_work() as uow:
        await uow.save(msgspec.structs.replace(running, status=JobStatus.error))
    await moved()

    async def delete_then_fail() -> None:
        async with store.unit_of_work() as uow:
            await uow.delete(job.id)  # type: ignore[arg-type]
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await delete_then_fail()
    await still()
    async with store.unit_of_work() as uow:
        await uow.delete(job.id)  # type: ignore[arg-type]
    await moved()
    assert await store.changes("nobody") == 0


async def test_reads_never_wait_for_a_unit_of_work_and_see_each_commit(store: JobStore) -> None:
    """A read runs alongside a unit of work that holds SQLite's write lock (PostgreSQL's row locks),
    sees the last commit, and the next read sees the writer's commit, the change counter (the
    ETag of `GET /jobs`) with it. Before, a read on SQLite queued on the write lock like a writer."""
    if isinstance(store, InMemoryJobStore):
        pytest.skip("one lock serialises everything the memory store does")
    (job,) = await add(store, make_job())
    before = await store.changes("alice")
    async with store.unit_of_work() as uow:
        await uow.delete(job.id)  # type: ignore[arg-type]  # a write under way, not committed
        async with asyncio.timeout(2):  # not busy_timeout's 30 s
            assert await store.changes("alice") == before
            assert await store.get(job.id) == job  # type: ignore[arg-type]
            assert (await store.page_for_user("alice", offset=0, limit=10)).changes == before
            assert [e.kind for e in await store.events_for_job(job.id, "alice", limit=10)] == ["created"]  # type: ignore[arg-type]
    assert await store.changes("alice") > before and await store.get(job.id) is None  # type: ignore[arg-type]


async def test_stats_count_jobs_and_the_outbox_and_date_its_oldest_entry(store: JobStore) -> None:
    assert await store.stats() == JobStats(by_status={}, dispatch_backlog=0, oldest_pending=None)
    sent, _late, early = await add(
        store, make_job("sent"), make_job("late", created=T0 + timedelta(hours=1)), make_job("early", created=T0 - timedelta(hours=1))
    )
    async with store.unit_of_work() as uow:
        await uow.delete(early.id)  # type: ignore[arg-type]
    entries = {c.job_id: c for c in await claim(store)}
    assert await record(store, entries[sent.id], DispatchResult(DispatchStatus.sent, 1))  # type: ignore[index]
    assert await store.stats() == JobStats(by_status={"queued": 2}, dispatch_backlog=1, oldest_pending=T0 + timedelta(hours=1))
