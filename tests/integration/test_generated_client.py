"""A Python client generated (openapi-python-client) from the live app's own document runs the README
flow: create a user, get a token, upload, list, start a job, read it until it has finished (the worker
simulator plays the worker-facing API), download its model. Nothing here is written by hand for this
API but the calls: if the document is wrong, the generated client is."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.live import live_stack

PACKAGE = "decode_userapi_generated_client"


def generate(document: bytes, into: Path) -> None:
    spec = into / "openapi.json"
    spec.write_bytes(document)
    # The thumbnail answers `image/png`, a type the generator reads as bytes only when told so.
    config = into / "generator.yaml"
    config.write_text('content_type_overrides:\n  "image/png": "application/octet-stream"\n')
    bin_dir = str(Path(sys.executable).parent)  # the generator runs ruff on its output
    result = subprocess.run(
        [os.path.join(bin_dir, "openapi-python-client"), "generate", "--path", str(spec), "--config", str(config), "--meta", "none",
         "--output-path", str(into / PACKAGE)],
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_generated_client_runs_the_readme_flow(tmp_path: Path):
    with live_stack(tmp_path / "stack") as stack:
        generate(httpx.get(f"{stack.api}/openapi.json").content, tmp_path)
        sys.path.insert(0, str(tmp_path))
        try:
            run_flow(stack.api)
        finally:
            sys.path.remove(str(tmp_path))
            for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
                del sys.modules[name]


def run_flow(base_url: str) -> None:
    def module(name: str):
        return importlib.import_module(f"{PACKAGE}.{name}")

    client_module, models, types = module("client"), module("models"), module("types")
    auth = {name: module(f"api.auth.{name}") for name in ("create_user", "create_token")}
    files = {name: module(f"api.files.{name}") for name in ("upload_files", "create_folder", "list_files", "download_file")}
    jobs = {name: module(f"api.jobs.{name}") for name in ("create_job", "get_job", "list_jobs")}
    credentials = {"username": "ada@example.org", "password": "analytical-1"}

    anonymous = client_module.Client(base_url=base_url)
    created = auth["create_user"].sync_detailed(client=anonymous, body=models.CreateUserBody(**credentials))
    assert created.status_code == 201 and created.parsed.email == "ada@example.org"
    token = auth["create_token"].sync(client=anonymous, body=models.CreateTokenBody(**credentials))
    assert isinstance(token, models.TokenView) and token.expires_in > 0

    ada = client_module.AuthenticatedClient(base_url=base_url, token=token.id_token)
    for folder, name, content in (("config/run1", "param.yaml", b"lr: 0.1\n"), ("data/run1", "calib.mat", b"calib")):
        body = models.UploadFilesBody(file=[types.File(payload=content, file_name=name)])
        uploaded = files["upload_files"].sync(folder, client=ada, body=body)
        assert isinstance(uploaded, models.FileInfo) and uploaded.path == f"{folder}/{name}", uploaded
    assert files["create_folder"].sync_detailed("data/run2", client=ada).status_code == 201
    listing = files["list_files"].sync("", client=ada, recursive=True)
    paths = [entry.path for entry in listing]
    assert {"config/run1/param.yaml", "data/run1/calib.mat", "data/run2/"} <= set(paths)
    assert paths == sorted(paths)

    job = jobs["create_job"].sync(
        client=ada,
        body=models.JobCreate.from_dict(
            {
                "job_name": "train1",
                "application": {"application": "decode", "version": "v0_10_1", "entrypoint": "train"},
                "attributes": {"files_down": {"config_id": "run1", "data_ids": ["run1"]}},
            }
        ),
    )
    assert isinstance(job, models.JobView) and job.status == models.JobStatus.QUEUED, job
    deadline = time.monotonic() + 15
    while (job := jobs["get_job"].sync(job.id, client=ada)).status not in ("finished", "error"):
        assert time.monotonic() < deadline, job.status
        time.sleep(0.05)
    assert job.status == "finished" and job.date_finished is not None
    assert [j.id for j in jobs["list_jobs"].sync(client=ada)] == [job.id]

    model = files["download_file"].sync("artifact/train1/model/model.pt", client=ada)
    assert model.payload.read() == b"simulated model weights\n"
    denied = files["list_files"].sync_detailed("", client=client_module.AuthenticatedClient(base_url=base_url, token="x"))
    assert denied.status_code == 401 and isinstance(denied.parsed, models.ErrorView)
