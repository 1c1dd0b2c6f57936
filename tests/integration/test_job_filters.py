"""`JobStore.list_for_user`/`page_for_user` with a `JobFilter`, on every adapter, checked against a
brute-force filter (`JobFilter.matches`, written independently below too) over 1,000 random jobs, and
`GET /jobs` with its `X-Total-Count` likewise; PostgreSQL's plans for a user with many jobs."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore, answer_statement, filtered_statements
from decode_userapi.adapters.sql import Database
from decode_userapi.config import Settings
from decode_userapi.container import in_memory_services
from decode_userapi.domain.commands import ALL_JOBS, JobFilter
from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.jobs import Job, JobStatus
from decode_userapi.entrypoints.http.app import create_app
from decode_userapi.ports.jobs import JobStore
from tests.integration import test_job_store
from tests.integration.test_job_store import PAYLOAD, T0, make_job

USERS = ("alice", "bob", "carol")
APPS = ("decode", "decode_fit", "comet")
# Names share prefixes, and hold the characters LIKE would treat as wildcards.
STEMS = ("train", "train_", "train%", "trainer", "fit.a", "fit-b", "Fit", "a_b", "a%b", "ab", "x+y")


store = test_job_store.store  # the fixture: every adapter, a fresh database each


def random_jobs(rng: random.Random, count: int) -> list[Job]:
    jobs, times = [], [T0 + timedelta(minutes=rng.randrange(0, 5000)) for _ in range(count // 3)]
    for i in range(count):
        user = "alice" if i % 4 else rng.choice(USERS[1:])  # alice: most of them
        jobs.append(
            make_job(
                f"{rng.choice(STEMS)}{i}",
                user=user,
                created=rng.choice(times),  # many jobs share a creation time: the id breaks ties
                status=rng.choice(list(JobStatus)),
                application=make_job().application.__class__(rng.choice(APPS), "v1", "train"),
            )
        )
    return jobs


def brute_force(jobs: list[Job], user: str, f: JobFilter) -> list[int]:
    """The rule, spelled out again without `JobFilter.matches`: ids newest first."""
    chosen = [
        j for j in jobs
        if j.user_id == user
        and (not f.statuses or j.status in f.statuses)
        and (f.name is None or j.job_name[: len(f.name)] == f.name)
        and (f.application is None or j.application.application == f.application)
        and (f.created_after is None or j.date_created > f.created_after)
        and (f.created_before is None or j.date_created < f.created_before)
    ]  # fmt: skip
    chosen.sort(key=lambda j: (j.date_created, j.id), reverse=True)
    return [j.id for j in chosen]  # type: ignore[misc]


def random_filter(rng: random.Random, jobs: list[Job]) -> JobFilter:
    values: dict[str, object] = {}
    if rng.random() < 0.5:
        values["statuses"] = tuple(rng.sample(list(JobStatus), rng.randint(1, 3)))
    if rng.random() < 0.4:
        name = rng.choice(jobs).job_name
        values["name"] = name[: rng.randint(1, len(name))] if rng.random() < 0.8 else rng.choice(["a%", "train_", "%", "_", "zzz"])
    if rng.random() < 0.3:
        values["application"] = rng.choice([*APPS, "none"])
    zone = timezone(timedelta(hours=rng.choice([-5, 0, 2])))
    if rng.random() < 0.3:  # sometimes exactly a job's time: the bounds are strict
        values["created_after"] = rng.choice(jobs).date_created.astimezone(zone) + timedelta(seconds=rng.choice([0, -1, 7]))
    if rng.random() < 0.3:
        values["created_before"] = rng.choice(jobs).date_created.astimezone(zone) + timedelta(seconds=rng.choice([0, 1, 7]))
    return JobFilter(**values)  # type: ignore[arg-type]


async def count(store: JobStore, user: str, f: JobFilter = ALL_JOBS) -> int:
    """How many jobs `f` matches, read with a page past the end (the page's count-only path)."""
    page = await store.page_for_user(user, offset=10**6, limit=1, filter=f)
    assert page.jobs == []
    return page.total


async def test_filters_agree_with_brute_force_over_random_jobs(store: JobStore) -> None:
    rng = random.Random(13)
    jobs = [await store.add_with_dispatch(job, PAYLOAD) for job in random_jobs(rng, 1000)]
    for _ in range(150):
        f = random_filter(rng, jobs)
        user = rng.choice(USERS)
        expected = brute_force(jobs, user, f)
        offset, limit = rng.choice([(0, 1000), (0, 1), (0, 7), (rng.randrange(0, 50), rng.randrange(1, 60))])
        listed = await store.list_for_user(user, offset=offset, limit=limit, filter=f)
        assert [j.id for j in listed] == expected[offset : offset + limit], f
        page = await store.page_for_user(user, offset=offset, limit=limit, filter=f)
        assert [j.id for j in page.jobs] == expected[offset : offset + limit], f
        assert page.total == len(expected), f
        assert page.changes == await store.changes(user), f
    # No filter: every one of the user's jobs, the hot path's statement.
    assert await count(store, "alice") == len(brute_force(jobs, "alice", ALL_JOBS))
    everything = await store.list_for_user("alice", offset=0, limit=1000)
    assert [j.id for j in everything] == brute_force(jobs, "alice", ALL_JOBS)


def query_of(rng: random.Random, f: JobFilter) -> list[tuple[str, str]]:
    """`f` as a browser or script would send it: statuses repeated or comma-separated, times with
    their offsets (httpx percent-encodes `+`, `%` and the rest)."""
    query: list[tuple[str, str]] = []
    if f.statuses:
        values = [s.value for s in f.statuses]
        query += [("status", v) for v in values] if rng.random() < 0.5 else [("status", ",".join(values))]
    for name in ("name", "application"):
        if getattr(f, name) is not None:
            query.append((name, getattr(f, name)))
    for name in ("created_after", "created_before"):
        if getattr(f, name) is not None:
            query.append((name, getattr(f, name).isoformat()))
    return query


async def test_over_http_filters_and_x_total_count_agree_with_brute_force() -> None:
    """`GET /jobs` with random filters over 1,000 random jobs (the in-memory store: what is checked
    here is the query's reading; the stores agree with the brute force above): the ids of the page,
    newest first, and `X-Total-Count`."""
    services = in_memory_services(Settings(auth=True), background_dispatch=False)
    rng = random.Random(1313)
    store = services.adapters.job_store()
    jobs = [await store.add_with_dispatch(job, PAYLOAD) for job in random_jobs(rng, 1000)]
    async with AsyncTestClient(create_app(services)) as client:
        headers = {}
        for user in USERS:
            await client.post("/user", data={"username": user, "password": "correct-horse-1"})
            token = (await client.post("/token", data={"username": user, "password": "correct-horse-1"})).json()["id_token"]
            headers[user] = {"Authorization": f"Bearer {token}"}
        for _ in range(100):
            f, user = random_filter(rng, jobs), rng.choice(USERS)
            expected = brute_force(jobs, user, f)
            offset, limit = rng.choice([(0, 1000), (0, 100), (rng.randrange(0, 40), rng.randrange(1, 30))])
            params = [*query_of(rng, f), ("offset", str(offset)), ("limit", str(limit))]
            r = await client.get("/jobs", params=params, headers=headers[user])
            assert r.status_code == 200, (params, r.text)
            assert [j["id"] for j in r.json()] == expected[offset : offset + limit], params
            assert int(r.headers["x-total-count"]) == len(expected), params


async def test_a_name_prefix_is_literal_and_case_sensitive(store: JobStore) -> None:
    names = ["a%b", "axb", "a_b", "aab", "A_b", "a", "ab%"]
    for i, name in enumerate(names):
        await store.add_with_dispatch(make_job(name, created=T0 + timedelta(seconds=i)), PAYLOAD)

    async def listed(prefix: str) -> set[str]:
        return {j.job_name for j in await store.list_for_user("alice", offset=0, limit=10, filter=JobFilter(name=prefix))}

    assert await listed("a%") == {"a%b"}
    assert await listed("a_") == {"a_b"}
    assert await listed("A") == {"A_b"}
    assert await listed("a") == {"a%b", "axb", "a_b", "aab", "a", "ab%"}
    assert await listed("ab%") == {"ab%"}
    assert await listed("b") == set()


async def test_time_bounds_compare_instants_whatever_the_offset(store: JobStore) -> None:
    await store.add_with_dispatch(make_job("at-t0"), PAYLOAD)  # T0 is 12:00 UTC
    plus_two = timezone(timedelta(hours=2))
    at_t0 = T0.astimezone(plus_two)
    assert await count(store, "alice", JobFilter(created_after=at_t0)) == 0  # strict
    assert await count(store, "alice", JobFilter(created_before=at_t0)) == 0
    assert await count(store, "alice", JobFilter(created_after=at_t0 - timedelta(microseconds=1))) == 1
    assert await count(store, "alice", JobFilter(created_before=at_t0 + timedelta(microseconds=1))) == 1


def test_filters_from_query_strings() -> None:
    f = JobFilter.from_query(status=["running,queued", "queued", ""], created_after="2026-01-01T00:00:00 01:00")
    assert f.statuses == (JobStatus.queued, JobStatus.running)
    assert f.created_after == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)  # `+01:00` sent unencoded: a space
    assert JobFilter.from_query(created_before="2026-01-01T00:00:00Z").created_before == datetime(2026, 1, 1, tzinfo=UTC)
    assert JobFilter.from_query(name="", application="").is_empty
    for query, field in [
        ({"status": ["running,sleeping"]}, "status"),
        ({"created_after": "2026-01-01T00:00:00"}, "created_after"),  # naive: which zone?
        ({"created_before": "yesterday"}, "created_before"),
        ({"name": "a\x00"}, "name"),
        ({"application": "x" * 1000}, "application"),
    ]:
        with pytest.raises(InvalidRequest, match=f"^{field}: "):
            JobFilter.from_query(**query)  # type: ignore[arg-type]


# Each filter, and what must bound its index scan besides the user (`Index Cond`); the other
# conditions filter the user's rows found that way. A name prefix bounds the scan of its own index
# (migration 0006): names are compared in code point order (COLLATE "C"), which the (user_id,
# job_name) unique index, in the database's collation, cannot serve (bench/RESULTS.md, "Filters:
# query plans").
PLANNED = [
    (ALL_JOBS, None),
    (JobFilter(statuses=(JobStatus.running,)), "status"),
    (JobFilter(statuses=(JobStatus.running, JobStatus.queued)), "status"),
    (JobFilter(name="job1"), "job_name"),
    (JobFilter(name="job1234"), "job_name"),
    (JobFilter(application="decode"), None),
    (JobFilter(created_after=T0 + timedelta(hours=3)), "date_created"),
    (JobFilter(created_before=T0 + timedelta(hours=1)), "date_created"),
    (JobFilter(created_after=T0 + timedelta(hours=1), created_before=T0 + timedelta(hours=2)), "date_created"),
    (JobFilter(statuses=(JobStatus.running, JobStatus.queued), application="decode"), "status"),
    (JobFilter(statuses=(JobStatus.finished,), name="job1", application="decode", created_after=T0,
               created_before=T0 + timedelta(hours=3)), "status"),
]


def index_conditions(plan: str) -> list[tuple[str, str]]:
    """(index, its `Index Cond`) for each index scan of an EXPLAIN."""
    found, index = [], ""
    for line in plan.splitlines():
        if scan := re.search(r"Index (?:Only )?Scan (?:Backward )?(?:using|on) (\w+)", line):
            index = scan[1]
        elif "Index Cond:" in line:
            found.append((index, line.split("Index Cond:", 1)[1]))
    return found


@pytest.mark.postgres
async def test_postgres_plans_use_an_index_for_a_user_with_many_jobs(postgres_database_url: str) -> None:
    """20,000 jobs over 50 users, ANALYZEd: every statement a filter runs (the page, its count, and
    both with the change counter, what `GET /jobs` reads) finds the user's rows by an index."""
    database = Database(postgres_database_url)
    store = SqlJobStore(database)
    await store.start()
    rows = [
        {
            "user_id": f"user{i % 50}", "job_name": f"job{i}", "priority": 0, "application": APPS[i % 3],
            "version": "v1", "entrypoint": "train", "attributes": {}, "status": list(JobStatus)[i % 7].value,
            "date_created": T0 + timedelta(seconds=i), "dispatch_status": "sent",
        }
        for i in range(20000)
    ]  # fmt: skip
    from decode_userapi.adapters.sql import jobs_table

    async with database.transaction() as conn:
        await conn.execute(jobs_table.insert(), rows)
        await conn.execute(text("ANALYZE jobs"))
    async with database.transaction() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        dialect = conn.dialect
        for f, bound in PLANNED:
            page, count = filtered_statements("user7", f, offset=0, limit=100)
            answer = answer_statement("user7", f, offset=0, limit=100)
            for kind, statement in {"page": page, "count": count, "answer": answer}.items():
                compiled = statement.compile(dialect=dialect)
                args = []
                for name in compiled.positiontup or ():
                    value = compiled.params[name]
                    process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                    args.append(process(value) if process else value)
                plan = "\n".join(r[0] for r in await driver.fetch("EXPLAIN " + str(compiled), *args))
                on_jobs = [cond for index, cond in index_conditions(plan) if index.startswith("ix_jobs_user_id")]
                assert "Seq Scan" not in plan and on_jobs, (f, kind, plan)
                assert all("user_id" in cond for cond in on_jobs), (f, kind, plan)
                if bound is not None:
                    assert all(bound in cond for cond in on_jobs), (f, kind, bound, plan)
    await store.aclose()
