"""Job use cases on in-memory adapters: state in, state out, no I/O."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from decode_userapi.adapters.catalog.memory import InMemoryCatalogSource
from decode_userapi.container import in_memory_services, start_services, stop_services
from decode_userapi.domain.applications import Catalog
from decode_userapi.domain.commands import JobCreate, StatusUpdate
from decode_userapi.domain.errors import Conflict, InvalidRequest, JobNameTaken, MissingInput, NotFound
from decode_userapi.domain.files import UserPath
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.jobs import ApplicationSpec, DispatchStatus, FilesDown, JobAttributes, JobStatus
from decode_userapi.ports.jobs import DispatchResult

CATALOG = yaml.safe_load(
    """
decode:
  v1:
    train:
      app: {cmd: [train.sh], env: [EPOCHS]}
      handler: {image_url: "img:1", files_down: {config_id: config, data_ids: data}, files_up: {artifact: model}}
"""
)
ALICE = Principal("alice", "alice@example.org", ("users",))
BOB = Principal("bob", "bob@example.org", ("users",))


@pytest.fixture
async def services():
    services = in_memory_services(background_dispatch=False)
    with services.adapters.catalog.override(InMemoryCatalogSource(Catalog.from_document(CATALOG))):
        await start_services(services)
        yield services
        await stop_services(services)


async def put(services, user: Principal, path: str, content: bytes = b"x") -> None:
    async def chunks():
        yield content

    await services.adapters.file_storage().write(user.user_id, UserPath.parse(path), chunks())


def create(name="run", **attributes) -> JobCreate:
    files_down = FilesDown(config_id="c", data_ids=["d"])
    return JobCreate(
        job_name=name,
        application=ApplicationSpec("decode", "v1", "train"),
        attributes=JobAttributes(files_down=attributes.get("files_down", files_down)),
    )


async def test_create_dispatches_and_records(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    view = await services.jobs().create(ALICE, create())
    assert view.status is JobStatus.queued and view.id == 1 and view.dispatch.status is DispatchStatus.pending
    assert services.adapters.worker_dispatch().submitted == []
    assert await services.dispatcher().run_once() == 1
    assert await services.dispatcher().run_once() == 0
    (payload,) = services.adapters.worker_dispatch().submitted
    assert payload["job"]["handler"]["files_down"] == {
        "config/p.yaml": "memory://alice/config/c/p.yaml",
        "data/a.tif": "memory://alice/data/d/a.tif",
    }
    assert payload["paths_upload"]["artifact"] == "memory://alice/artifact/run"
    assert [j.dispatch.status for j in await services.jobs().list(ALICE)] == [DispatchStatus.sent]
    assert await services.jobs().list(BOB) == []


async def test_missing_inputs_and_names(services):
    await put(services, ALICE, "config/c/p.yaml")
    with pytest.raises(MissingInput, match="data_ids"):
        await services.jobs().create(ALICE, create())
    await put(services, ALICE, "data/d/a.tif")
    await services.jobs().create(ALICE, create())
    with pytest.raises(JobNameTaken):
        await services.jobs().create(ALICE, create())


async def test_unavailable_worker_api_is_retried_later(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    workers, clock, dispatcher = services.adapters.worker_dispatch(), services.adapters.clock(), services.dispatcher()
    workers.fail = True
    assert await dispatcher.run_once() == 1
    state = (await services.jobs().get(ALICE, job.id)).dispatch
    assert state.status is DispatchStatus.pending and state.attempts == 1 and state.last_error
    assert await dispatcher.run_once() == 0  # not due before its backoff
    workers.fail = False
    clock.advance(5)
    assert await dispatcher.run_once() == 1
    assert len(workers.submitted) == 1
    assert (await services.jobs().get(ALICE, job.id)).dispatch.status is DispatchStatus.sent


async def test_giving_up_fails_the_job_and_tells_the_owner(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    services.adapters.worker_dispatch().fail = True
    services.adapters.clock().advance(25 * 3600)
    await services.dispatcher().run_once()
    view = await services.jobs().get(ALICE, job.id)
    assert view.status is JobStatus.error and view.dispatch.status is DispatchStatus.failed
    await services.adapters.email_sender().drain()
    (email,) = services.adapters.email_outbox().outbox
    assert "error" in email[1]


async def test_deleting_a_pending_job_cancels_its_dispatch(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    await services.jobs().delete(ALICE, job.id)
    assert await services.dispatcher().run_once() == 0
    assert services.adapters.worker_dispatch().submitted == []


async def test_owner_is_emailed_once(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    jobs = services.jobs()
    for status in ("pulled", "running", "finished", "error", "finished"):
        await jobs.apply_status_update(StatusUpdate(job_id=job.id, status=JobStatus(status), runtime_details="<b>x</b>"))
    await services.adapters.email_sender().drain()
    (email,) = services.adapters.email_outbox().outbox
    assert email[0] == "alice@example.org" and "run (1) finished" in email[1] and "<b>x</b>" in email[2]


async def test_concurrent_updates_email_once(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    statuses = ["running", "finished", "error", "postprocessing"] * 25
    await asyncio.gather(
        *(services.jobs().apply_status_update(StatusUpdate(job_id=job.id, status=JobStatus(s))) for s in statuses)
    )
    await services.adapters.email_sender().drain()
    assert len(services.adapters.email_outbox().outbox) == 1
    final = await services.jobs().get(ALICE, job.id)
    assert final.status in (JobStatus.finished, JobStatus.error) and final.date_finished is not None


async def test_failing_email_never_fails_the_update(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    services.adapters.email_outbox().fail = True
    view = await services.jobs().apply_status_update(StatusUpdate(job_id=job.id, status=JobStatus.error))
    await services.adapters.email_sender().drain()
    assert view.status is JobStatus.error


async def test_other_users_jobs_are_not_found(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    with pytest.raises(NotFound):
        await services.jobs().get(BOB, job.id)
    with pytest.raises(NotFound):
        await services.jobs().delete(BOB, job.id)
    await services.jobs().delete(ALICE, job.id)
    with pytest.raises(NotFound):
        await services.jobs().apply_status_update(StatusUpdate(job_id=job.id, status=JobStatus.running))


async def test_storage_quota_refuses_the_upload_that_would_exceed_it():
    from decode_userapi.domain.errors import PayloadTooLarge
    from decode_userapi.services.files import FileService

    services = in_memory_services(background_dispatch=False)
    storage = services.adapters.file_storage()
    files = FileService(storage, quota_bytes=100)

    async def chunks(size: int):
        for _ in range(size // 10):
            yield b"x" * 10

    await files.upload(ALICE, UserPath.parse("data/"), "a.bin", chunks(60))
    await files.upload(ALICE, UserPath.parse("data/"), "a.bin", chunks(90))  # replacing: old size not counted
    with pytest.raises(PayloadTooLarge, match="quota"):
        await files.upload(ALICE, UserPath.parse("data/"), "b.bin", chunks(20))
    assert await storage.stat(ALICE.user_id, UserPath.parse("data/b.bin")) is None
    await files.upload(BOB, UserPath.parse("data/"), "b.bin", chunks(90))  # quotas are per user


async def test_embedded_api_lists_and_counts_with_a_filter() -> None:
    from decode_userapi import JobFilter, UserApi

    async with UserApi.in_memory() as api:
        alice = await api.register("alice", "correct horse 1")
        assert await api.jobs.list(alice, filter=JobFilter(name="x")) == []
        page = await api.jobs.page(alice, filter=JobFilter(statuses=(JobStatus.running,)))
        assert (page.jobs, page.total) == ([], 0)


async def test_cancel_before_delivery_is_never_sent_and_the_owner_is_told_once(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    view = await services.jobs().cancel(ALICE, job.id)
    assert view.status is JobStatus.canceled and view.dispatch.status is DispatchStatus.canceled and view.date_finished
    assert await services.dispatcher().run_once() == 0
    assert services.adapters.worker_dispatch().submitted == []
    with pytest.raises(Conflict, match="ended already"):
        await services.jobs().cancel(ALICE, job.id)
    with pytest.raises(NotFound):
        await services.jobs().cancel(BOB, job.id)
    await services.adapters.email_sender().drain()
    assert [e[1] for e in services.adapters.email_outbox().outbox] == ["DECODE OpenCloud job run (1) canceled"]
    assert [(e.kind, e.status) for e in await services.jobs().events(ALICE, job.id)] == [
        ("created", JobStatus.queued), ("cancel", JobStatus.canceled),
    ]  # fmt: skip


async def test_a_sender_holding_the_lease_of_a_canceled_job_records_nothing(services):
    """The send raced the cancel: the outcome is dropped, and the worker's first update gets 404."""
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    store = services.adapters.job_store()
    async with store.unit_of_work() as uow:
        (entry,) = await uow.claim_dispatches(60, 10)
    await services.jobs().cancel(ALICE, job.id)
    async with store.unit_of_work() as uow:
        assert not await uow.record_dispatch(entry, DispatchResult(DispatchStatus.sent, 1))
    with pytest.raises(NotFound, match="canceled"):
        await services.jobs().apply_status_update(StatusUpdate(job_id=job.id, status=JobStatus.pulled))
    history = await services.jobs().events(ALICE, job.id)
    assert [(e.kind, e.status, e.ignored) for e in history][-2:] == [
        ("cancel", JobStatus.canceled, False), ("status", JobStatus.pulled, True),
    ]  # fmt: skip
    assert (await services.jobs().get(ALICE, job.id)).status is JobStatus.canceled


async def test_giving_up_records_the_attempt_and_the_error(services):
    await put(services, ALICE, "config/c/p.yaml")
    await put(services, ALICE, "data/d/a.tif")
    job = await services.jobs().create(ALICE, create())
    services.adapters.worker_dispatch().fail = True
    services.adapters.clock().advance(25 * 3600)
    await services.dispatcher().run_once()
    history = await services.jobs().events(ALICE, job.id)
    assert [(e.kind, e.status) for e in history] == [
        ("created", JobStatus.queued), ("dispatch", None), ("status", JobStatus.error),
    ]  # fmt: skip
    assert history[1].details.startswith("failed after 1 attempt(s): ")
    assert "could not be handed to a worker" in history[2].details
    with pytest.raises(InvalidRequest):
        await services.jobs().events(ALICE, job.id, limit=0)
