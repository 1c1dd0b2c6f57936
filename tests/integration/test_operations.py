"""/health, /ready, /metrics and request ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from tests.fakes.tcpproxy import ThreadedTcpProxy
from tests.integration.test_resilience import login, make_settings


async def test_health_ready_metrics(client, alice, fake_workerfacing):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await client.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {
        "database": "ok",
        "storage": "ok",
        "application_config": "ok",
        "workerfacing_api": "ok",
    }
    assert r.json()["dispatch"] == {"backlog": 0, "oldest_pending_seconds": None, "failing_seconds": None, "fault": None}
    await client.get("/jobs", headers=alice.headers)
    r = await client.get("/metrics")
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"  # one charset
    text = r.text
    assert 'decode_userapi_http_requests_total{method="GET",route="/jobs",status="200"}' in text
    assert "decode_userapi_dispatch_backlog" in text and "decode_userapi_email_failures" in text
    assert "decode_userapi_dispatch_failing_seconds 0.0" in text
    assert "decode_userapi_dispatch_oldest_pending_seconds 0.0" in text


async def test_worker_api_down_is_reported_not_required(client, fake_workerfacing):
    fake_workerfacing.stop()
    try:
        r = await client.get("/ready")
        assert r.status_code == 200 and r.json()["checks"]["workerfacing_api"].startswith("unreachable")
    finally:
        fake_workerfacing.start()


async def test_request_ids(client):
    r = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/health", headers={"X-Request-ID": "bad id with spaces\n"})
    assert len(r.headers["x-request-id"]) == 32


@pytest.mark.postgres
async def test_ready_follows_the_database(tmp_path: Path, postgres_database_url, fake_workerfacing):
    url = make_url(postgres_database_url)
    proxy = ThreadedTcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with AsyncTestClient(app=create_app(build_services(make_settings(tmp_path, proxied, fake_workerfacing.url)))) as client:
            await login(client)
            assert (await client.get("/ready")).status_code == 200
            proxy.cut()
            r = await client.get("/ready")
            assert r.status_code == 503 and r.json()["checks"]["database"] != "ok"
            assert (await client.get("/health")).status_code == 200
            proxy.restore()
            assert (await client.get("/ready")).status_code == 200
    finally:
        proxy.close()
