"""Fixtures for HTTP tests: the real app over real adapters (SQLite/PostgreSQL, local disk), a fake
worker-facing API, and users with tokens. Imported into conftest.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from decode_userapi.config import Settings
from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app

T = TypeVar("T")
INTERNAL_KEY = "internal-test-key"
PASSWORD = "correct-horse-1"


@dataclass
class User:
    name: str
    headers: dict[str, str]


@pytest.fixture
def settings(tmp_path: Path, database_url: str, fake_workerfacing) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        user_data_root_path=str(tmp_path / "data" / "user_data"),
        database_url=database_url,
        workerfacing_api_url=fake_workerfacing.url,
        internal_api_key=INTERNAL_KEY,
        token_signing_key="test-signing-key-0123456789abcdef0123456789",
        max_upload_bytes=5 * 1024 * 1024,
        frontend_url="https://frontend.example.org",
        dispatch_max_delay_seconds=0.2,  # retries while the fake worker-facing API is down come fast
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(app=create_app(build_services(settings))) as client:
        yield client


async def make_user(client: AsyncTestClient, name: str, groups: list[str] | None = None) -> User:
    params = [("groups", g) for g in groups] if groups else None
    r = await client.post("/user", data={"username": name, "password": PASSWORD}, params=params)
    assert r.status_code == 201, r.text
    r = await client.post("/token", data={"username": name, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return User(name, {"Authorization": f"Bearer {r.json()['id_token']}"})


@pytest.fixture
async def alice(client: AsyncTestClient) -> User:
    return await make_user(client, "alice@example.org")


@pytest.fixture
async def bob(client: AsyncTestClient) -> User:
    return await make_user(client, "bob")


async def eventually(condition: Callable[[], T], timeout: float = 10.0) -> T:
    """Wait until `condition()` is truthy (jobs reach the worker-facing API in the background)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := condition()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.02)
    return value


def user_root(settings: Settings, user: User) -> Path:
    return Path(settings.user_data_root_path).resolve() / user.name
