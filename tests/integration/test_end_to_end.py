"""The README's first command, end to end: `decode-userapi serve` with no settings but where the
worker-facing API is, a full job round trip against the fake worker-facing API, files on disk."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from io import BytesIO
from pathlib import Path

import httpx
import pytest

from tests.fakes.workerfacing import send_status
from tests.integration.harness import eventually

KEY = "internal-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path, fake_workerfacing):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DECODE_", "DATABASE_", "AUTH"))}
    env.update(WORKERFACING_API_URL=fake_workerfacing.url, INTERNAL_API_KEY_SECRET=KEY)
    process = subprocess.Popen(
        [sys.executable, "-m", "decode_userapi.entrypoints.cli", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the service did not start:\n{process.stdout.read().decode()}")
        time.sleep(0.1)
    yield base, tmp_path
    process.terminate()
    output = process.communicate(timeout=15)[0].decode()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output, output


async def test_job_round_trip(server, fake_workerfacing):
    base, cwd = server
    data_root = (cwd / "decode-userapi-data" / "user_data").resolve()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        form = {"username": "ada@example.org", "password": "analytical-1"}
        assert (await http.post("/user", data=form)).status_code == 201
        token = (await http.post("/token", data=form)).json()["id_token"]
        auth = {"Authorization": f"Bearer {token}"}

        for folder, name, content in [("config/run1", "param.yaml", b"p: 1"), ("data/run1", "calib.mat", b"m" * 5000)]:
            request = (await http.post(f"/files/{folder}/url", headers=auth)).json()
            sent = await http.request(
                request["method"], request["url"], headers=request["headers"], data=request["data"],
                files={"file": (name, content)},
            )
            assert sent.status_code == 201, sent.text

        body = {
            "job_name": "train1",
            "application": {"application": "decode", "version": "v0_10_1", "entrypoint": "train"},
            "attributes": {"files_down": {"config_id": "run1", "data_ids": ["run1"]}},
        }
        created = await http.post("/jobs", headers=auth, json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]

        (payload,) = await eventually(lambda: fake_workerfacing.received)
        assert payload["job"]["meta"]["job_id"] == job_id
        for name, uri in payload["job"]["handler"]["files_down"].items():
            assert uri.startswith(str(data_root) + "/ada@example.org/")
            assert Path(uri).is_file(), name
        # The worker runs and uploads its results where paths_upload and files_up say.
        uploads = payload["paths_upload"]
        model = Path(uploads["artifact"]) / "model" / "model.pt"
        model.parent.mkdir(parents=True)
        model.write_bytes(b"weights" * 1000)
        log = Path(uploads["log"]) / "log" / "train.log"
        log.parent.mkdir(parents=True)
        log.write_text("epoch 1\n")
        for status in ("pulled", "preprocessing", "running", "postprocessing", "finished"):
            r = await send_status(base, KEY, job_id, status, f"{status} ok")
            assert r.status_code == 200 and r.json() == status

        job = (await http.get(f"/jobs/{job_id}", headers=auth)).json()
        assert job["status"] == "finished" and job["date_finished"] is not None
        assert job["runtime_details"].splitlines()[-1] == "finished ok"

        got = await http.get("/files/artifact/train1/model/model.pt/download", headers=auth)
        assert got.content == b"weights" * 1000
        url = (await http.get("/files/log/train1/url", headers=auth)).json()
        zipped = await http.get(url["url"], headers=url["headers"])
        assert zipfile.ZipFile(BytesIO(zipped.content)).read("log/train.log") == b"epoch 1\n"
