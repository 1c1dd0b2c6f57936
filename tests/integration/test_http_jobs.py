"""CONTRACT "Jobs" and "Talking to the worker-facing API", over the real app on every stack and a fake
worker API; one smoke test on S3/PostgreSQL with Cognito."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from tests.integration.harness import (
    INTERNAL_KEY,
    dispatch_backlog,
    eventually,
    identities,
    outbox_drained,
    send,
    stacks,
)

TRAIN = {"application": "decode", "version": "v0_10_1", "entrypoint": "train"}
JOB_KEYS = {
    "id", "job_name", "user_id", "user_email", "environment", "priority", "application", "attributes",
    "hardware", "status", "date_created", "date_started", "date_finished", "runtime_details", "paths_out",
    "dispatch",  # beyond: where the hand-over to the worker-facing API stands
}


def job_body(name="decode_test", **overrides):
    body = {
        "job_name": name,
        "environment": "cloud",
        "priority": 0,
        "application": TRAIN,
        "attributes": {"files_down": {"config_id": "test", "data_ids": ["test"], "artifact_ids": []}, "env_vars": {}},
        "hardware": {"cpu_cores": None, "memory": None, "gpu_model": None, "gpu_archi": None, "gpu_mem": None},
    }
    body.update(overrides)
    return body


async def put_inputs(client, user):
    inputs = [("config/test", "param.yaml", b"p: 1"), ("data/test", "calib.mat", b"m"), ("data/test/sub", "f.tif", b"t")]
    for folder, name, content in inputs:
        r = await client.post(f"/files/{folder}/upload", headers=user.headers, files={"file": (name, content)})
        assert r.status_code == 201


async def status(client, job_id, value, details=None, key=INTERNAL_KEY):
    return await client.put(
        "/_job_status",
        headers={"x-api-key": key} if key else {},
        json={"job_id": job_id, "status": value, "runtime_details": details},
    )


async def test_applications(client, alice):
    r = await client.get("/jobs/applications", headers=alice.headers)
    assert r.status_code == 200
    assert r.json()["decode"]["v0_10_1"]["train"]["handler"]["files_up"] == {"log": "log", "artifact": "model"}


async def test_create_job_and_payload(client, alice, raw_storage, fake_workerfacing):
    await put_inputs(client, alice)
    r = await client.post("/jobs", headers=alice.headers, json=job_body())
    assert r.status_code == 201, r.text
    job = r.json()
    assert set(job) == JOB_KEYS
    assert job["status"] == "queued" and job["user_id"] == "alice@example.org"
    assert job["user_email"] == "alice@example.org"
    assert job["paths_out"] == {"output": "output/decode_test", "log": "log/decode_test", "artifact": "artifact/decode_test"}
    datetime.fromisoformat(job["date_created"])
    assert job["date_started"] is None and job["date_finished"] is None and job["runtime_details"] is None

    (payload,) = await eventually(lambda: fake_workerfacing.received)

    def uri(path: str) -> str:
        return raw_storage.uri(alice, path)

    handler = payload["job"]["handler"]
    assert handler["files_down"] == {
        "config/param.yaml": uri("config/test/param.yaml"),
        "data/calib.mat": uri("data/test/calib.mat"),
        "data/sub/f.tif": uri("data/test/sub/f.tif"),
    }
    # The worker-facing API reads them directly.
    assert raw_storage.read(handler["files_down"]["config/param.yaml"]) == b"p: 1"
    assert raw_storage.read(handler["files_down"]["data/sub/f.tif"]) == b"t"
    assert handler["image_name"] == "decode" and handler["image_version"] == "v0_10_1" and handler["entrypoint"] == "train"
    assert handler["files_up"] == {"log": "log", "artifact": "model"}
    assert payload["job"]["meta"]["job_id"] == job["id"]
    assert payload["job"]["meta"]["idempotency_key"]
    # Like paths_out: the job's folders, without a trailing slash.
    assert payload["paths_upload"] == {
        "output": uri("output/decode_test"),
        "log": uri("log/decode_test"),
        "artifact": uri("artifact/decode_test"),
    }
    assert payload["environment"] == "cloud" and payload["priority"] == 0 and payload["group"] is None


async def test_single_file_input_uses_its_name(client, alice, fake_workerfacing):
    await put_inputs(client, alice)
    body = job_body(attributes={"files_down": {"config_id": "test/param.yaml", "data_ids": ["test/calib.mat"]}})
    r = await client.post("/jobs", headers=alice.headers, json=body)
    assert r.status_code == 201, r.text
    (payload,) = await eventually(lambda: fake_workerfacing.received)
    assert set(payload["job"]["handler"]["files_down"]) == {"config/param.yaml", "data/calib.mat"}


async def test_defaults_may_be_left_out(client, alice):
    await put_inputs(client, alice)
    r = await client.post("/jobs", headers=alice.headers, json={"job_name": "minimal", "application": TRAIN,
                                                                "attributes": {"files_down": {"config_id": "test"}}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["priority"] == 0 and job["environment"] is None and job["hardware"] is None
    assert job["attributes"] == {"files_down": {"config_id": "test", "data_ids": [], "artifact_ids": []}, "env_vars": {}}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"application": {**TRAIN, "application": "nope"}}, 422),
        ({"application": {**TRAIN, "version": "v0"}}, 422),
        ({"application": {**TRAIN, "entrypoint": "x"}}, 422),
        ({"priority": 6}, 422),
        ({"priority": -1}, 422),
        ({"attributes": {"files_down": {"config_id": "test"}, "env_vars": {"HOME": "/"}}}, 422),
        ({"attributes": {"files_down": {"config_id": "missing"}}}, 400),
        ({"attributes": {"files_down": {"config_id": "test", "data_ids": ["nope"]}}}, 400),
        ({"attributes": {"files_down": {"config_id": "test", "artifact_ids": ["nope"]}}}, 400),
        ({"attributes": {"files_down": {"config_id": "../../bob/config"}}}, 400),
        ({"job_name": "../data"}, 422),
        ({"job_name": ""}, 422),
        ({"environment": "moon"}, 422),
        ({"priority": "high"}, 422),  # a wrong type: 422, as FastAPI answers
        ({"application": None}, 422),
    ],
)
async def test_create_rejects(client, alice, fake_workerfacing, change, code):
    await put_inputs(client, alice)
    r = await client.post("/jobs", headers=alice.headers, json=job_body(**change))
    assert r.status_code == code, r.text
    assert isinstance(r.json()["detail"], str)
    assert fake_workerfacing.received == []


async def test_malformed_bodies_are_422(client, alice):
    for content in [b"", b"not json", b"[]", b'{"job_name": 1}', b"\xff\xfe"]:
        r = await client.post("/jobs", headers={**alice.headers, "content-type": "application/json"}, content=content)
        assert r.status_code == 422 and r.json()["detail"], content


async def test_duplicate_name_is_409(client, alice, bob):
    await put_inputs(client, alice)
    await put_inputs(client, bob)
    assert (await client.post("/jobs", headers=alice.headers, json=job_body())).status_code == 201
    assert (await client.post("/jobs", headers=alice.headers, json=job_body())).status_code == 409
    assert (await client.post("/jobs", headers=bob.headers, json=job_body())).status_code == 201


async def test_submissions_survive_a_worker_api_outage(client, alice, fake_workerfacing):
    await put_inputs(client, alice)
    fake_workerfacing.mode = "down"
    ids = []
    for i in range(5):
        r = await client.post("/jobs", headers=alice.headers, json=job_body(f"j{i}"))
        assert r.status_code == 201 and r.json()["dispatch"]["status"] == "pending"
        ids.append(r.json()["id"])
    await eventually(lambda: fake_workerfacing.requests >= 5)
    job = (await client.get(f"/jobs/{ids[0]}", headers=alice.headers)).json()
    assert job["status"] == "queued" and job["dispatch"]["status"] == "pending"
    await eventually(lambda: fake_workerfacing.requests >= 10)
    job = (await client.get(f"/jobs/{ids[0]}", headers=alice.headers)).json()
    assert job["dispatch"]["attempts"] >= 1 and "503" in job["dispatch"]["last_error"]
    fake_workerfacing.mode = "up"
    received = await eventually(lambda: len(fake_workerfacing.received) >= 5 and fake_workerfacing.received)
    assert sorted(p["job"]["meta"]["job_id"] for p in received) == ids
    await outbox_drained(client)  # nothing is left to send: and nothing was sent twice
    assert len(fake_workerfacing.received) == 5
    job = (await client.get(f"/jobs/{ids[0]}", headers=alice.headers)).json()
    assert job["dispatch"]["status"] == "sent"


async def test_a_refused_job_ends_in_error(client, alice, fake_workerfacing):
    await put_inputs(client, alice)
    fake_workerfacing.fail_next(1, status=400)
    job_id = (await client.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]

    async def ended():
        return (await client.get(f"/jobs/{job_id}", headers=alice.headers)).json()

    for _ in range(200):
        job = await ended()
        if job["status"] == "error":
            break
        await asyncio.sleep(0.02)
    assert job["status"] == "error" and job["dispatch"]["status"] == "failed"
    assert "could not be handed to a worker" in job["runtime_details"]


async def test_deleting_a_pending_job_cancels_its_dispatch(client, alice, fake_workerfacing):
    await put_inputs(client, alice)
    fake_workerfacing.mode = "down"
    job_id = (await client.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]
    await eventually(lambda: fake_workerfacing.requests >= 1)
    assert (await client.delete(f"/jobs/{job_id}", headers=alice.headers)).status_code == 204
    assert await dispatch_backlog(client) == 0
    fake_workerfacing.mode = "up"
    # A job recorded after the delete is claimed in a later round of the dispatcher than any retry of
    # the deleted one, and a round ends when its deliveries have: once it arrives, the deleted job
    # would have too.
    later = (await client.post("/jobs", headers=alice.headers, json=job_body("later"))).json()["id"]
    received = await eventually(lambda: fake_workerfacing.received)
    assert [p["job"]["meta"]["job_id"] for p in received] == [later]


async def test_list_get_delete(client, alice, bob, raw_storage):
    await put_inputs(client, alice)
    ids = []
    for i in range(3):
        ids.append((await client.post("/jobs", headers=alice.headers, json=job_body(f"j{i}"))).json()["id"])
    r = await client.get("/jobs", headers=alice.headers)
    assert [j["id"] for j in r.json()] == ids[::-1]
    r = await client.get("/jobs?limit=1", headers=alice.headers)
    assert [j["id"] for j in r.json()] == [ids[-1]]
    r = await client.get("/jobs?offset=1&limit=1", headers=alice.headers)
    assert [j["id"] for j in r.json()] == [ids[1]]
    for bad in ["limit=0", "limit=100000", "offset=-1", "limit=abc", "offset=99999999999999999999999"]:
        assert 400 <= (await client.get(f"/jobs?{bad}", headers=alice.headers)).status_code < 500, bad
    assert (await client.get("/jobs", headers=bob.headers)).json() == []

    assert (await client.get(f"/jobs/{ids[0]}", headers=alice.headers)).json()["job_name"] == "j0"
    assert (await client.get(f"/jobs/{ids[0]}", headers=bob.headers)).status_code == 404
    assert (await client.delete(f"/jobs/{ids[0]}", headers=bob.headers)).status_code == 404
    for bad in ["0", "-1", "99999999999999999999999", "abc"]:
        assert (await client.get(f"/jobs/{bad}", headers=alice.headers)).status_code in (400, 404), bad

    # The worker wrote results straight to storage; deleting the job deletes them.
    out = raw_storage.uri(alice, "output/j0/")
    raw_storage.write(out + "result.h5", b"r")
    assert raw_storage.exists(out)
    assert (await client.delete(f"/jobs/{ids[0]}", headers=alice.headers)).status_code == 204
    assert not raw_storage.exists(out)
    assert (await client.get(f"/jobs/{ids[0]}", headers=alice.headers)).status_code == 404
    assert (await status(client, ids[0], "running")).status_code == 404


async def test_status_updates(client, alice):
    await put_inputs(client, alice)
    job_id = (await client.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]
    r = await status(client, job_id, "pulled")
    assert r.status_code == 200 and r.json() == "pulled"  # a bare JSON string, as the original answers
    await status(client, job_id, "running", "epoch 1")
    await status(client, job_id, "running", "epoch 2")
    r = await status(client, job_id, "finished", "done")
    assert r.json() == "finished"
    # After the end nothing changes, and the answer is still 200 with the stored status.
    r = await status(client, job_id, "running")
    assert r.status_code == 200 and r.json() == "finished"
    job = (await client.get(f"/jobs/{job_id}", headers=alice.headers)).json()
    assert job["status"] == "finished"
    assert job["runtime_details"] == "epoch 1\nepoch 2\ndone"
    assert job["date_started"] is not None and job["date_finished"] is not None
    assert datetime.fromisoformat(job["date_started"]) <= datetime.fromisoformat(job["date_finished"])


async def test_concurrent_status_updates_of_one_job_all_land(client, alice):
    """Updates are applied by compare-and-set: racing ones retry (then lock), none is lost."""
    await put_inputs(client, alice)
    job_id = (await client.post("/jobs", headers=alice.headers, json=job_body())).json()["id"]
    answers = await asyncio.gather(*(status(client, job_id, "running", f"line {i}") for i in range(24)))
    assert {r.status_code for r in answers} == {200}
    job = (await client.get(f"/jobs/{job_id}", headers=alice.headers)).json()
    assert job["status"] == "running"
    assert sorted(job["runtime_details"].split("\n")) == sorted(f"line {i}" for i in range(24))


async def test_status_update_errors(client, alice):
    assert (await status(client, 12345, "running")).status_code == 404
    assert (await status(client, 1, "running", key=None)).status_code == 401
    assert (await status(client, 1, "running", key="wrong")).status_code == 401
    r = await client.put("/_job_status", headers={"x-api-key": INTERNAL_KEY}, json={"job_id": 1, "status": "dancing"})
    assert 400 <= r.status_code < 500
    r = await client.put("/_job_status", headers={"x-api-key": INTERNAL_KEY}, json={"job_id": 10**30, "status": "running"})
    assert 400 <= r.status_code < 500


async def test_jobs_need_a_token(client):
    assert (await client.get("/jobs")).status_code == 401
    assert (await client.post("/jobs", json=job_body())).status_code == 401


@stacks("s3-postgres")
@identities("cognito")
async def test_smoke_on_s3_with_cognito(client, alice, bob, settings, raw_storage, fake_workerfacing):
    """Accounts and tokens from Cognito, files on S3, jobs in PostgreSQL: a job's round trip."""
    access = (await client.get("/access_info")).json()
    assert access["cognito"] == {
        "user_pool_id": settings.cognito_user_pool_id, "client_id": settings.cognito_client_id,
        "region": settings.cognito_region,
    }
    assert (await client.get("/user", headers=alice.headers)).json() == {"email": "alice@example.org", "groups": ["users"]}

    await put_inputs(client, alice)
    request = (await client.post("/files/artifact/prior/url", headers=alice.headers)).json()
    assert (await send(client, request, files={"file": ("model.pt", b"w0")})).is_success
    r = await client.get("/files/?recursive=true&show_dirs=false", headers=alice.headers)
    assert [f["path"] for f in r.json()] == [
        "artifact/prior/model.pt", "config/test/param.yaml", "data/test/calib.mat", "data/test/sub/f.tif",
    ]
    assert (await client.get("/files/data/test/", headers=bob.headers)).status_code == 404

    files_down = {"config_id": "test", "data_ids": ["test"], "artifact_ids": ["prior"]}
    r = await client.post("/jobs", headers=alice.headers, json=job_body(attributes={"files_down": files_down}))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["user_id"] == "alice@example.org" and job["user_email"] == "alice@example.org"
    assert [j["id"] for j in (await client.get("/jobs", headers=alice.headers)).json()] == [job["id"]]
    assert (await client.get("/jobs", headers=bob.headers)).json() == []

    (payload,) = await eventually(lambda: fake_workerfacing.received)
    prefix = f"s3://{settings.s3_bucket}/user_data/alice@example.org/"
    assert payload["job"]["handler"]["files_down"] == {
        "config/param.yaml": prefix + "config/test/param.yaml",
        "data/calib.mat": prefix + "data/test/calib.mat",
        "data/sub/f.tif": prefix + "data/test/sub/f.tif",
        "artifact/model.pt": prefix + "artifact/prior/model.pt",
    }
    assert raw_storage.read(prefix + "artifact/prior/model.pt") == b"w0"
    assert payload["paths_upload"]["artifact"] == prefix + "artifact/decode_test"

    # The worker uploads its model where paths_upload and files_up say; the user downloads it.
    raw_storage.write(payload["paths_upload"]["artifact"] + "/model/model.pt", b"weights")
    for value in ("pulled", "running", "finished"):
        assert (await status(client, job["id"], value)).status_code == 200
    got = await client.get("/files/artifact/decode_test/model/model.pt/url", headers=alice.headers)
    assert (await send(client, got.json())).content == b"weights"
    assert (await client.delete(f"/jobs/{job['id']}", headers=alice.headers)).status_code == 204
    assert not raw_storage.exists(payload["paths_upload"]["artifact"] + "/")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (job_body(job_name=5), "job_name"),
        (job_body(priority="high"), "priority"),
        (job_body(application={"application": 1, "version": "v0_10_1", "entrypoint": "train"}), "application"),
        (job_body(attributes={"files_down": {"config_id": ["x"]}}), "config_id"),
        (job_body(hardware={"cpu_cores": "many"}), "cpu_cores"),
        ({"application": {"application": "decode", "version": "v0_10_1", "entrypoint": "train"}}, "job_name"),
    ],
)
async def test_wrong_body_types_are_422_naming_the_field(client, alice, body, field):
    r = await client.post("/jobs", headers=alice.headers, json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]


async def test_malformed_bodies_and_query_types_are_422(client, alice):
    r = await client.post("/jobs", headers={**alice.headers, "content-type": "application/json"}, content=b"{not json")
    assert r.status_code == 422 and r.json()["detail"]
    for query, field in (("offset=abc", "offset"), ("limit=1.5", "limit"), ("limit=", "limit"), ("offset=-1", "offset")):
        r = await client.get(f"/jobs?{query}", headers=alice.headers)
        assert r.status_code == 422, (query, r.status_code)
        assert field in r.json()["detail"], (query, r.json())
    r = await client.put("/files/data/x", headers=alice.headers, json={"path": 5})
    assert r.status_code == 422 and "path" in r.json()["detail"]
    r = await client.get("/files/?show_dirs=maybe", headers=alice.headers)
    assert r.status_code == 422 and "show_dirs" in r.json()["detail"]
    for spelling in ("True", "FALSE", "true", "false"):
        assert (await client.get(f"/files/?show_dirs={spelling}&recursive={spelling}", headers=alice.headers)).status_code == 200


async def test_status_update_body_types_are_422(client, alice):
    headers = {"x-api-key": INTERNAL_KEY}
    refused = (
        ({"job_id": "one", "status": "running"}, "job_id"),
        ({"job_id": 1, "status": 3}, "status"),
        ({"status": "running"}, "job_id"),
    )
    for body, field in refused:
        r = await client.put("/_job_status", headers=headers, json=body)
        assert r.status_code == 422 and field in r.json()["detail"], (body, r.text)
    # The key is checked before the body is looked at.
    assert (await client.put("/_job_status", json={"job_id": "one"})).status_code == 401


async def test_list_filters_and_total_count(client, alice, bob):
    """Filters combine; X-Total-Count counts what they select; a browser on the frontend's origin may
    read it (CORS)."""
    await put_inputs(client, alice)
    comet = {"application": "comet", "version": "v0_1_0", "entrypoint": "correct_drift"}
    ids = {}
    for name, app in [("train_a", TRAIN), ("train_b", TRAIN), ("trainer", TRAIN), ("drift1", comet), ("drift2", comet)]:
        r = await client.post("/jobs", headers=alice.headers, json=job_body(name, application=app))
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    await status(client, ids["train_a"], "running")
    await status(client, ids["drift1"], "finished")

    async def listed(query, user=alice):
        r = await client.get(f"/jobs?{query}", headers=user.headers)
        assert r.status_code == 200, (query, r.text)
        return [j["job_name"] for j in r.json()], int(r.headers["x-total-count"])

    assert await listed("") == (["drift2", "drift1", "trainer", "train_b", "train_a"], 5)
    assert await listed("limit=2") == (["drift2", "drift1"], 5)
    assert await listed("status=running&status=finished") == (["drift1", "train_a"], 2)
    assert await listed("status=running,queued&limit=1&offset=1") == (["trainer"], 4)
    assert await listed("name=train_") == (["train_b", "train_a"], 2)  # `_` is no wildcard
    assert await listed("name=train&application=decode&status=queued") == (["trainer", "train_b"], 2)
    assert await listed("application=comet&status=queued") == (["drift2"], 1)
    assert await listed("application=comet", bob) == ([], 0)

    created = datetime.fromisoformat((await client.get(f"/jobs/{ids['trainer']}", headers=alice.headers)).json()["date_created"])
    at = created.isoformat()
    assert (await listed(f"created_before={at.replace('+', '%2B')}"))[0] == ["train_b", "train_a"]
    # An unencoded `+` arrives as a space: still read as the offset.
    assert (await listed(f"created_after={at}"))[0] == ["drift2", "drift1"]
    utc_z = created.astimezone().strftime("%Y-%m-%dT%H:%M:%S.%f%z")  # another offset, same instant
    assert (await listed(f"created_after={utc_z.replace('+', '%2B')}&created_before=2100-01-01T00:00:00Z"))[1] == 2

    for query, field in [
        ("status=running,sleeping", "status"),
        ("created_after=2026-01-01T00:00:00", "created_after"),  # naive: refused, not guessed
        ("created_before=yesterday", "created_before"),
        ("name=%00", "name"),
    ]:
        r = await client.get(f"/jobs?{query}", headers=alice.headers)
        assert r.status_code == 422 and r.json()["detail"].startswith(f"{field}: "), (query, r.text)

    r = await client.get("/jobs", headers=alice.headers | {"Origin": "https://frontend.example.org"})
    assert "x-total-count" in r.headers["access-control-expose-headers"].lower()
