"""`decode-userapi worker-sim`: the stand-in worker-facing API runs a job to `finished` on the embedded
default, and refuses what the real one refuses."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from decode_userapi.entrypoints.worker_sim import SimulatorConfig, create_simulator_app
from tests.fakes.server import LocalAsgiServer, read_body
from tests.integration.live import KEY, LiveApp, live_stack

PASSWORD = "analytical-1"
JOB = {
    "job_name": "train1",
    "application": {"application": "decode", "version": "v0_10_1", "entrypoint": "train"},
    "attributes": {"files_down": {"config_id": "run1", "data_ids": ["run1"]}},
}


def wait_for(condition: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def sign_in(http: httpx.Client, name: str = "ada@example.org") -> dict[str, str]:
    assert http.post("/user", data={"username": name, "password": PASSWORD}).status_code == 201
    token = http.post("/token", data={"username": name, "password": PASSWORD}).json()["id_token"]
    return {"Authorization": f"Bearer {token}"}


def test_a_training_goes_through_every_state_and_leaves_its_results(tmp_path: Path):
    with live_stack(tmp_path) as stack, httpx.Client(base_url=stack.api, timeout=10) as http:
        auth = sign_in(http)
        for folder, name in (("config/run1", "param.yaml"), ("data/run1", "calib.mat")):
            r = http.post(f"/files/{folder}/upload", headers=auth, files={"file": (name, b"x" * 10)})
            assert r.status_code == 201, r.text
        r = http.post("/jobs", headers=auth, json=JOB)
        assert r.status_code == 201 and r.json()["status"] == "queued"
        job_id = r.json()["id"]
        seen: list[str] = []

        def finished() -> bool:
            job = http.get(f"/jobs/{job_id}", headers=auth).json()
            if not seen or seen[-1] != job["status"]:
                seen.append(job["status"])
            return job["status"] in ("finished", "error")

        wait_for(finished)
        job = http.get(f"/jobs/{job_id}", headers=auth).json()
        assert job["status"] == "finished", job
        assert job["date_started"] and job["date_finished"]
        assert "2 input files, 20 bytes" in job["runtime_details"]
        assert set(seen) <= {"queued", "pulled", "preprocessing", "running", "postprocessing", "finished"}
        listing = http.get("/files/artifact/train1/", headers=auth, params={"recursive": "true"}).json()
        assert [f["path"] for f in listing if f["type"] == "file"] == ["artifact/train1/model/model.pt"]
        log = http.get("/files/log/train1/log/job.log/download", headers=auth)
        assert log.status_code == 200 and "postprocessing" in log.text
        # deleting the job takes its outputs with it, as for a real worker's
        assert http.delete(f"/jobs/{job_id}", headers=auth).status_code == 204
        assert not (stack.data_root / "ada@example.org" / "artifact" / "train1").exists()


class RecordingUserApi(LocalAsgiServer):
    """Records the status updates the simulator sends; answers 404 for job 404 (deleted)."""

    name = "recording user API"

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[tuple[str | None, dict[str, Any]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        import json

        body = json.loads(await read_body(receive) or b"null")
        key = dict(scope["headers"]).get(b"x-api-key", b"").decode() or None
        self.updates.append((key, body))
        status = 404 if body and body.get("job_id") == 404 else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(body and body["status"]).encode()})


@pytest.fixture
def simulator(tmp_path: Path):
    root = (tmp_path / "user_data").resolve()
    (root / "ada" / "data").mkdir(parents=True)
    (root / "ada" / "data" / "in.tif").write_bytes(b"1234")
    with RecordingUserApi() as userapi:
        app = LiveApp("worker-sim")
        config = SimulatorConfig(api_key=KEY, userapi_url=userapi.url, data_root=str(root), step_seconds=0.01)
        app.start(create_simulator_app(config))
        try:
            yield app.url, userapi, root
        finally:
            app.stop()


def payload(root: Path, job_id: int, files_down: dict[str, str] | None = None, **paths: str) -> dict[str, Any]:
    tree = root / "ada"
    return {
        "job": {
            "app": {"cmd": ["run"], "env": {}},
            "handler": {
                "image_url": "example/image:1",
                "image_name": "comet",
                "image_version": "v1",
                "entrypoint": "fit",
                "files_down": {"data/in.tif": str(tree / "data" / "in.tif")} if files_down is None else files_down,
                "files_up": {"output": "output", "log": "log"},
            },
            "meta": {"job_id": job_id, "date_created": "2026-01-01T00:00:00+00:00", "idempotency_key": f"k{job_id}"},
            "hardware": {},
        },
        "environment": None,
        "group": None,
        "priority": 0,
        "paths_upload": {
            "output": str(tree / "output" / "j"),
            "log": str(tree / "log" / "j"),
            "artifact": str(tree / "artifact" / "j"),
            **paths,
        },
    }


def statuses(userapi: RecordingUserApi, job_id: int) -> list[str]:
    return [body["status"] for _, body in userapi.updates if body["job_id"] == job_id]


def test_reports_with_the_key_and_writes_outputs_once_per_job(simulator):
    url, userapi, root = simulator
    for _ in range(2):  # a redelivery of the same job is acknowledged, not run again
        r = httpx.post(f"{url}/_jobs", json=payload(root, 7), headers={"x-api-key": KEY})
        assert r.status_code == 201 and r.json()["job_id"] == 7
    wait_for(lambda: "finished" in statuses(userapi, 7))
    assert statuses(userapi, 7) == ["pulled", "preprocessing", "running", "postprocessing", "finished"]
    # the same id from a fresh database (another idempotency key) is another job: it runs
    again = payload(root, 7)
    again["job"]["meta"]["idempotency_key"] = "another"
    assert httpx.post(f"{url}/_jobs", json=again, headers={"x-api-key": KEY}).status_code == 201
    wait_for(lambda: statuses(userapi, 7).count("finished") == 2)
    assert {key for key, _ in userapi.updates} == {KEY}
    assert (root / "ada" / "output" / "j" / "output" / "result.csv").is_file()
    assert (root / "ada" / "log" / "j" / "log" / "job.log").read_text().startswith("simulated comet v1 fit")
    assert not (root / "ada" / "artifact" / "j").exists()  # this entrypoint uploads no artifact


def test_missing_input_ends_in_error_and_a_deleted_job_stops(simulator):
    url, userapi, root = simulator
    missing = {"data/gone.tif": str(root / "ada" / "data" / "gone.tif")}
    assert httpx.post(f"{url}/_jobs", json=payload(root, 8, missing), headers={"x-api-key": KEY}).status_code == 201
    assert httpx.post(f"{url}/_jobs", json=payload(root, 404), headers={"x-api-key": KEY}).status_code == 201
    wait_for(lambda: "error" in statuses(userapi, 8))
    assert statuses(userapi, 8) == ["pulled", "error"]
    (details,) = [b["runtime_details"] for _, b in userapi.updates if b["job_id"] == 8 and b["status"] == "error"]
    assert "gone.tif" in details
    time.sleep(0.2)
    assert statuses(userapi, 404) == ["pulled"]  # 404: deleted by its user, dropped


@pytest.mark.parametrize(
    ("headers", "change", "status", "detail"),
    [
        ({}, {}, 401, "x-api-key"),
        ({"x-api-key": "wrong"}, {}, 401, "x-api-key"),
        ({"x-api-key": KEY}, {"output": "s3://bucket/user_data/ada/output/j"}, 422, "local storage only"),
        ({"x-api-key": KEY}, {"output": "/etc"}, 422, "not an absolute path under"),
        ({"x-api-key": KEY}, {"output": "relative/output"}, 422, "not an absolute path under"),
    ],
)
def test_refusals(simulator, headers, change, status, detail):
    url, userapi, root = simulator
    r = httpx.post(f"{url}/_jobs", json=payload(root, 9, **change), headers=headers)
    assert r.status_code == status and detail in r.json()["detail"]
    time.sleep(0.05)
    assert statuses(userapi, 9) == []


def test_the_command_needs_the_shared_key(tmp_path: Path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DECODE_", "INTERNAL_API"))}
    r = subprocess.run(
        [sys.executable, "-m", "decode_userapi.entrypoints.cli", "worker-sim", "--port", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and "INTERNAL_API_KEY_SECRET" in r.stderr
