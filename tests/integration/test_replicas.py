"""Two service processes on one PostgreSQL database and one bucket serve the same users
consistently: what one records, the other reads and updates."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.fixtures import INTERNAL_API_KEY
from tests.integration.harness import PASSWORD, eventually
from tests.integration.test_crash_recovery import TRAIN, Service

pytestmark = pytest.mark.postgres


async def test_two_replicas_share_users_files_and_jobs(tmp_path, postgres_database_url, local_aws, s3_bucket, fake_workerfacing):
    replicas = []
    for name in ("a", "b"):
        service = Service(tmp_path / name, postgres_database_url, fake_workerfacing.url)
        service.env.update(
            FILESYSTEM="s3",
            S3_BUCKET=s3_bucket,
            S3_REGION=local_aws.region,
            TOKEN_SIGNING_KEY="replicas-share-this-signing-key-0123456789",
            AWS_ENDPOINT_URL=local_aws.endpoint_url,
            AWS_ACCESS_KEY_ID=local_aws.access_key_id,
            AWS_SECRET_ACCESS_KEY=local_aws.secret_access_key,
            AWS_DEFAULT_REGION=local_aws.region,
        )
        replicas.append(service)
    for service in replicas:  # both start at once: migrations take turns on the advisory lock
        service.start()
    a, b = replicas
    try:
        async with httpx.AsyncClient(base_url=a.base, timeout=30) as on_a, httpx.AsyncClient(base_url=b.base, timeout=30) as on_b:
            form = {"username": "ada@example.org", "password": PASSWORD}
            assert (await on_a.post("/user", data=form)).status_code == 201
            assert (await on_b.post("/user", data=form)).status_code == 409
            token = (await on_b.post("/token", data=form)).json()["id_token"]
            auth = {"Authorization": f"Bearer {token}"}

            r = await on_a.post("/files/config/c/upload", headers=auth, files={"file": ("p.yaml", b"p: 1")})
            assert r.status_code == 201
            assert [f["path"] for f in (await on_b.get("/files/config/c/", headers=auth)).json()] == ["config/c/p.yaml"]

            body = {"job_name": "shared", "application": TRAIN, "attributes": {"files_down": {"config_id": "c"}}}
            job_id = (await on_b.post("/jobs", headers=auth, json=body)).json()["id"]
            assert (await on_a.post("/jobs", headers=auth, json=body)).status_code == 409
            (payload,) = await eventually(lambda: fake_workerfacing.received)
            assert payload["job"]["handler"]["files_down"]["config/p.yaml"] == f"s3://{s3_bucket}/user_data/ada@example.org/config/c/p.yaml"

            key = {"x-api-key": INTERNAL_API_KEY}
            assert (await on_a.put("/_job_status", headers=key, json={"job_id": job_id, "status": "running"})).status_code == 200
            assert (await on_b.get(f"/jobs/{job_id}", headers=auth)).json()["status"] == "running"
            await on_b.put("/_job_status", headers=key, json={"job_id": job_id, "status": "finished", "runtime_details": "ok"})
            job = (await on_a.get(f"/jobs/{job_id}", headers=auth)).json()
            assert job["status"] == "finished" and job["dispatch"]["status"] == "sent"

            assert (await on_a.delete(f"/jobs/{job_id}", headers=auth)).status_code == 204
            assert (await on_b.get(f"/jobs/{job_id}", headers=auth)).status_code == 404
    finally:
        for service in replicas:
            service.stop()
    # Both dispatchers ran meanwhile, and stopped after any delivery under way: still delivered once.
    assert len(fake_workerfacing.received) == 1
