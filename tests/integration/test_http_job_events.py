"""Issue #13: a job's history (`GET /jobs/{id}/events`) and cancel (`POST /jobs/{id}/cancel`), over
the real app on SQLite and PostgreSQL, with the fake worker-facing API and an in-memory mailbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from litestar.testing import AsyncTestClient

from decode_userapi.adapters.email.memory import InMemoryEmailSender
from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from tests.integration.harness import eventually, outbox_drained, stacks
from tests.integration.test_http_jobs import job_body, put_inputs, status

pytestmark = stacks("local-sqlite", "local-postgres")


@pytest.fixture
def mailbox() -> InMemoryEmailSender:
    return InMemoryEmailSender()


@pytest.fixture
async def client(settings, mailbox) -> AsyncIterator[AsyncTestClient]:  # the harness's, with a mailbox
    services = build_services(settings)
    with services.adapters.email_sender.override(mailbox):
        async with AsyncTestClient(app=create_app(services)) as client:
            yield client


async def events(client, user, job_id, **params):
    r = await client.get(f"/jobs/{job_id}/events", headers=user.headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def shape(found):
    return [(e["kind"], e["status"], e["ignored"]) for e in found]


async def delivered(client, user, fake_workerfacing, name="decode_test"):
    job_id = (await client.post("/jobs", headers=user.headers, json=job_body(name))).json()["id"]
    await eventually(lambda: [p for p in fake_workerfacing.received if p["job"]["meta"]["job_id"] == job_id])
    await outbox_drained(client)
    return job_id


async def test_a_jobs_history_shows_every_change_in_order_with_the_stale_update_marked(client, alice, fake_workerfacing):
    await put_inputs(client, alice)
    start = datetime.now(UTC)
    job_id = await delivered(client, alice, fake_workerfacing)
    for value, details in [("pulled", None), ("running", "epoch 1"), ("pulled", "late"), ("finished", "done")]:
        assert (await status(client, job_id, value, details)).status_code == 200
    history = await events(client, alice, job_id)
    assert shape(history) == [
        ("created", "queued", False),
        ("dispatch", None, False),
        ("status", "pulled", False),
        ("status", "running", False),
        ("status", "pulled", True),  # stale: recorded, marked, nothing changed
        ("status", "finished", False),
    ]
    assert [e["details"] for e in history][1:] == ["sent (attempt 1)", None, "epoch 1", "late", "done"]
    times = [datetime.fromisoformat(e["at"]) for e in history]
    assert times == sorted(times) and start.replace(microsecond=0) <= times[0] and times[-1] <= datetime.now(UTC)
    assert [e["id"] for e in history] == sorted(e["id"] for e in history)
    job = (await client.get(f"/jobs/{job_id}", headers=alice.headers)).json()
    assert (job["status"], job["runtime_details"]) == ("finished", "epoch 1\ndone")  # the job's fields as before
    # Paged: `after` is the last id seen.
    first = await events(client, alice, job_id, limit=4)
    rest = await events(client, alice, job_id, after=first[-1]["id"], limit=4)
    assert first + rest == history and await events(client, alice, job_id, after=history[-1]["id"]) == []


async def test_events_are_the_owners_and_their_paging_is_checked(client, alice, bob):
    await put_inputs(client, alice)
    job_id = (await client.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]
    for user, path in [(bob, f"/jobs/{job_id}/events"), (alice, "/jobs/999999/events")]:
        r = await client.get(path, headers=user.headers)
        assert r.status_code == 404 and "detail" in r.json()
    for bad in ["limit=0", "limit=1001", "after=-1", "limit=x", "after=99999999999999999999999"]:
        r = await client.get(f"/jobs/{job_id}/events?{bad}", headers=alice.headers)
        assert r.status_code == 422 and "detail" in r.json(), bad
    assert (await client.post(f"/jobs/{job_id}/cancel", headers=bob.headers)).status_code == 404
    assert (await client.get(f"/jobs/{job_id}", headers=alice.headers)).json()["status"] == "queued"


async def test_cancel_before_delivery_sends_nothing_to_the_workers(client, alice, fake_workerfacing, mailbox):
    await put_inputs(client, alice)
    fake_workerfacing.mode = "down"
    job_id = (await client.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]
    await eventually(lambda: fake_workerfacing.requests >= 1)
    r = await client.post(f"/jobs/{job_id}/cancel", headers=alice.headers)
    assert r.status_code == 200, r.text
    view = r.json()
    assert (view["status"], view["dispatch"]["status"]) == ("canceled", "canceled") and view["date_finished"]
    fake_workerfacing.mode = "up"
    # A job recorded after the cancel is claimed in a later round of the dispatcher than any retry of
    # the canceled one would be: once it arrives, the canceled one would have too.
    later = (await client.post("/jobs", headers=alice.headers, json=job_body("later"))).json()["id"]
    received = await eventually(lambda: fake_workerfacing.received)
    assert [p["job"]["meta"]["job_id"] for p in received] == [later]
    assert (await client.get(f"/jobs/{job_id}", headers=alice.headers)).json() == view
    assert shape(await events(client, alice, job_id))[-1] == ("cancel", "canceled", False)
    assert [subject for _, subject, _ in mailbox.outbox] == [f"DECODE OpenCloud job decode_test ({job_id}) canceled"]


async def test_cancel_after_delivery_stops_the_worker_and_keeps_the_job(client, alice, fake_workerfacing, mailbox, raw_storage):
    await put_inputs(client, alice)
    job_id = await delivered(client, alice, fake_workerfacing)
    assert (await status(client, job_id, "running", "epoch 1")).json() == "running"
    raw_storage.write(raw_storage.uri(alice, "output/decode_test/partial.h5"), b"r")  # the worker's output so far
    r = await client.post(f"/jobs/{job_id}/cancel", headers=alice.headers)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    r = await status(client, job_id, "running", "epoch 2")  # the worker's next update: stop
    assert r.status_code == 404 and "canceled" in r.json()["detail"]
    assert (await status(client, job_id, "finished", "done")).status_code == 404
    job = (await client.get(f"/jobs/{job_id}", headers=alice.headers)).json()
    assert (job["status"], job["runtime_details"]) == ("canceled", "epoch 1") and job["date_finished"]
    assert raw_storage.exists(raw_storage.uri(alice, "output/decode_test/partial.h5"))
    assert shape(await events(client, alice, job_id))[-3:] == [
        ("cancel", "canceled", False), ("status", "running", True), ("status", "finished", True),
    ]  # fmt: skip
    r = await client.post(f"/jobs/{job_id}/cancel", headers=alice.headers)
    assert r.status_code == 409 and "canceled" in r.json()["detail"]
    assert len(mailbox.outbox) == 1 and mailbox.outbox[0][1].endswith("canceled")  # once


async def test_cancelling_a_finished_or_failed_job_is_409(client, alice, fake_workerfacing, mailbox):
    await put_inputs(client, alice)
    for name, final in [("done", "finished"), ("failed", "error")]:
        job_id = (await client.post("/jobs", headers=alice.headers, json=job_body(name))).json()["id"]
        assert (await status(client, job_id, final)).status_code == 200
        r = await client.post(f"/jobs/{job_id}/cancel", headers=alice.headers)
        assert r.status_code == 409 and final in r.json()["detail"]
        assert (await client.get(f"/jobs/{job_id}", headers=alice.headers)).json()["status"] == final
    assert len(mailbox.outbox) == 2  # the two ends, nothing for the refused cancels
    r = await client.get("/jobs?status=canceled", headers=alice.headers)
    assert r.status_code == 200 and r.json() == []
