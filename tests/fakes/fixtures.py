"""Fixtures over the fakes. Make them visible with `pytest_plugins = ["tests.fakes.fixtures"]` in the
root conftest.py (or import both names there)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.workerfacing import FakeWorkerFacingApi

INTERNAL_API_KEY = "internal-test-key"


@pytest.fixture(scope="session")
def fake_workerfacing_server() -> Iterator[FakeWorkerFacingApi]:
    """One server for the session: stopping uvicorn takes ~0.2 s, too slow to pay in every test."""
    with FakeWorkerFacingApi(INTERNAL_API_KEY) as fake:
        yield fake


@pytest.fixture
def fake_workerfacing(fake_workerfacing_server: FakeWorkerFacingApi) -> FakeWorkerFacingApi:
    """A fake worker-facing API in a fresh state for each test, expecting `x-api-key: internal-test-key`."""
    fake_workerfacing_server.reset()
    return fake_workerfacing_server
