"""Fixtures for HTTP tests: the real app over real adapters, a fake worker-facing API, and users with
tokens. Imported into conftest.py.

Every test that asks for `settings` (or `client`, `alice`, ...) runs over the `stack` matrix:
- `local-sqlite`: local disk, SQLite;
- `local-postgres`: local disk, PostgreSQL;
- `s3-postgres`: a fresh bucket on moto's S3 (`local_aws`), PostgreSQL;
and with the `identity` `builtin`. The modules about users' files over HTTP (files, isolation) run on
`STORAGE_STACKS` instead: both storages, and S3 on both databases, so S3 is tested without a
PostgreSQL server too (`s3-sqlite`); local disk on PostgreSQL would repeat the local-sqlite runs
(file operations do not touch the database). `@stacks(...)` and `@identities(...)` narrow or widen
the matrix for a test or a module (`identities("builtin", "cognito")`: a fresh moto Cognito user pool
per test, with `AUTH=1`, so `make_user` goes through Cognito's admin API).

`raw_storage` looks at the stored bytes behind the app's back, by storage URI, as the worker-facing
API does: absolute paths on local disk, `s3://bucket/key` on S3.

Litestar's `AsyncTestClient` runs the app (lifespan and every request) on its own portal thread's
event loop; the app's S3, Cognito and database clients belong to that loop. Call the app through
`client` (or `client.blocking_portal`), never directly from the test's loop.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from litestar.testing import AsyncTestClient

from decode_userapi.config import Settings
from decode_userapi.container import build_services
from decode_userapi.entrypoints.http.app import create_app
from tests.fakes.aws import LocalAws

T = TypeVar("T")
INTERNAL_KEY = "internal-test-key"
PASSWORD = "correct-horse-1"
S3_ROOT = "user_data"  # USER_DATA_ROOT_PATH on S3: the key prefix of every user's tree

_STACK_PARAMS = {
    "local-sqlite": pytest.param("local-sqlite", id="local-sqlite"),
    "local-postgres": pytest.param("local-postgres", id="local-postgres", marks=pytest.mark.postgres),
    "s3-sqlite": pytest.param("s3-sqlite", id="s3-sqlite"),
    "s3-postgres": pytest.param("s3-postgres", id="s3-postgres", marks=pytest.mark.postgres),
}
STACKS = [_STACK_PARAMS[name] for name in ("local-sqlite", "local-postgres", "s3-postgres")]  # the default
STORAGE_STACKS = ("local-sqlite", "s3-sqlite", "s3-postgres")
IDENTITIES = [pytest.param("builtin", id="builtin"), pytest.param("cognito", id="cognito")]
# Cognito's password policy for the test pools: PASSWORD passes, "short" does not.
COGNITO_PASSWORD_POLICY = {
    "MinimumLength": 8,
    "RequireLowercase": True,
    "RequireNumbers": True,
    "RequireUppercase": False,
    "RequireSymbols": False,
}


def _select(params: list[Any], names: tuple[str, ...]) -> list[Any]:
    chosen = [p for p in params if p.values[0] in names]
    assert len(chosen) == len(names), f"unknown names in {names}"
    return chosen


def stacks(*names: str) -> pytest.MarkDecorator:
    """Run a test (or, as `pytestmark`, a module) on these stacks only, e.g. `@stacks("s3-postgres")`."""
    return pytest.mark.parametrize("stack", _select(list(_STACK_PARAMS.values()), names), indirect=True)


def identities(*names: str) -> pytest.MarkDecorator:
    """Run a test (or a module) with these identity providers, e.g. `@identities("builtin", "cognito")`."""
    return pytest.mark.parametrize("identity", _select(IDENTITIES, names), indirect=True)


@dataclass
class User:
    name: str
    headers: dict[str, str]


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    """`<storage>-<database>`: where the app keeps files and jobs."""
    return request.param


@pytest.fixture
def identity(request: pytest.FixtureRequest) -> str:
    """The identity provider: `builtin` unless a test asks for more with `identities(...)`."""
    return getattr(request, "param", "builtin")


@pytest.fixture(scope="session")
def s3_admin(local_aws: LocalAws) -> Any:
    """A plain boto3 S3 client, to look at buckets behind the app's back."""
    import boto3

    return boto3.client("s3", **local_aws.client_kwargs())


@pytest.fixture(scope="session")
def cognito_admin(local_aws: LocalAws) -> Any:
    import boto3

    return boto3.client("cognito-idp", **local_aws.client_kwargs())


@dataclass(frozen=True)
class CognitoPool:
    id: str
    client_id: str
    region: str
    jwks_url: str


@pytest.fixture
def cognito_pool(local_aws: LocalAws, cognito_admin: Any) -> Iterator[CognitoPool]:
    """A fresh user pool and public app client on moto, so every test has its own users."""
    pool_id = cognito_admin.create_user_pool(
        PoolName=f"decode-{uuid.uuid4().hex[:8]}", Policies={"PasswordPolicy": COGNITO_PASSWORD_POLICY}
    )["UserPool"]["Id"]
    client_id = cognito_admin.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="decode-userapi",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        # moto puts attributes into ID tokens only when the client lists them as readable
        ReadAttributes=["email", "email_verified"],
    )["UserPoolClient"]["ClientId"]
    yield CognitoPool(pool_id, client_id, local_aws.region, f"{local_aws.endpoint_url}/{pool_id}/.well-known/jwks.json")
    cognito_admin.delete_user_pool(UserPoolId=pool_id)


@pytest.fixture
def s3_bucket(local_aws: LocalAws, s3_admin: Any) -> str:
    name = f"userapi-{uuid.uuid4().hex}"
    s3_admin.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": local_aws.region})
    return name


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, stack: str, identity: str, fake_workerfacing
) -> Settings:
    filesystem, database = stack.split("-")
    # The database first: without a PostgreSQL server, its tests skip (or fail) before any set-up.
    values: dict[str, Any] = {"database_url": request.getfixturevalue(f"{database}_database_url")}
    if filesystem == "s3":
        local_aws: LocalAws = request.getfixturevalue("local_aws")
        values.update(
            filesystem="s3",
            s3_bucket=request.getfixturevalue("s3_bucket"),
            s3_region=local_aws.region,
            user_data_root_path=S3_ROOT,
        )
    else:
        values.update(user_data_root_path=str(tmp_path / "data" / "user_data"))
    if identity == "cognito":
        pool: CognitoPool = request.getfixturevalue("cognito_pool")
        values.update(
            identity="cognito",
            cognito_user_pool_id=pool.id,
            cognito_client_id=pool.client_id,
            cognito_region=pool.region,
            cognito_jwks_url=pool.jwks_url,
        )
    return Settings(
        data_dir=str(tmp_path / "data"),
        auth=True,
        workerfacing_api_url=fake_workerfacing.url,
        internal_api_key=INTERNAL_KEY,
        token_signing_key="test-signing-key-0123456789abcdef0123456789",
        max_upload_bytes=5 * 1024 * 1024,
        frontend_url="https://frontend.example.org",
        dispatch_max_delay_seconds=0.2,  # retries while the fake worker-facing API is down come fast
        **values,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(app=create_app(build_services(settings))) as client:
        yield client


@pytest.fixture(scope="session", autouse=True)
def password_hashing_once_per_password() -> Iterator[None]:
    """The built-in identity's scrypt costs ~55 ms a call by design, twice per user made (register,
    then the token), in nearly every HTTP test: about a minute of the suite. Within the test process,
    `verify_password` (a pure function) remembers its answers, and `hash_password` hashes the
    harness's `PASSWORD` once (a fresh salt per process, not per user). Every other password is
    hashed and checked as in production; the subprocess tests run the code unchanged."""
    from decode_userapi.adapters.identity import builtin

    hash_password, verify_password = builtin.hash_password, builtin.verify_password
    hashed = functools.cache(hash_password)

    def hash_once(password: str) -> str:
        return hashed(password) if password == PASSWORD else hash_password(password)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtin, "hash_password", hash_once)
        patch.setattr(builtin, "verify_password", functools.cache(verify_password))
        yield


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


async def dispatch_backlog(client: AsyncTestClient) -> int:
    """How many recorded jobs are still to be handed to the worker-facing API (`/metrics`): pending
    entries, including any whose delivery is under way (an entry leaves the backlog only once its
    outcome is recorded)."""
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    found = re.search(r"^decode_userapi_dispatch_backlog (\S+)$", r.text, re.MULTILINE)
    assert found, r.text
    return int(float(found[1]))


async def outbox_drained(client: AsyncTestClient, timeout: float = 10.0) -> None:
    """Wait until the outbox is empty. From then on nothing more is sent: only pending entries are
    ever claimed, so "no second delivery arrives" can be checked at once instead of after a sleep."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await dispatch_backlog(client):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the outbox was not drained within {timeout} s")
        await asyncio.sleep(0.02)


async def eventually(condition: Callable[[], T], timeout: float = 10.0) -> T:
    """Wait until `condition()` is truthy (jobs reach the worker-facing API in the background)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := condition()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.02)
    return value


async def send(client: AsyncTestClient, request: dict[str, Any], **kwargs: Any) -> httpx.Response:
    """Send a `FileHTTPRequest` as it is, as a browser would: the app's own URLs through the test
    client, anything else (pre-signed S3 requests) with a plain httpx client."""
    args = (request["method"], request["url"])
    options = {"headers": request["headers"], "data": request["data"] or None, **kwargs}
    if urlsplit(request["url"]).netloc == urlsplit(str(client.base_url)).netloc:
        return await client.request(*args, **options)
    async with httpx.AsyncClient() as http:
        return await http.request(*args, **options)


@dataclass
class RawStorage:
    """The users' trees as the worker-facing API sees them: storage URIs it reads and writes directly."""

    settings: Settings
    s3: Any = None

    @property
    def is_s3(self) -> bool:
        return self.settings.filesystem == "s3"

    def uri(self, user: User | str, path: str = "") -> str:
        """CONTRACT's storage URI of `path` (relative to the user's root; folders end in `/`)."""
        name = user.name if isinstance(user, User) else user
        if self.is_s3:
            return f"s3://{self.settings.s3_bucket}/{S3_ROOT}/{name}/{path}"
        return f"{Path(self.settings.user_data_root_path).resolve()}/{name}/{path}"

    def _key(self, uri: str) -> str:
        prefix = f"s3://{self.settings.s3_bucket}/"
        assert uri.startswith(prefix), uri
        return uri[len(prefix) :]

    def keys(self, uri: str) -> list[str]:
        """What lies below the folder `uri`, relative to it (files; on S3 also folder markers)."""
        if self.is_s3:
            prefix = self._key(uri)
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.settings.s3_bucket, Prefix=prefix)
            found = [obj["Key"][len(prefix) :] for page in pages for obj in page.get("Contents", [])]
            return sorted(k for k in found if k)
        root = Path(uri)
        return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))

    def exists(self, uri: str) -> bool:
        """A file, or (for a URI ending in `/`) a folder with anything in or at it."""
        if self.is_s3:
            key = self._key(uri)
            return bool(self.s3.list_objects_v2(Bucket=self.settings.s3_bucket, Prefix=key, MaxKeys=1).get("KeyCount"))
        path = Path(uri)
        return path.is_dir() if uri.endswith("/") else path.is_file()

    def read(self, uri: str) -> bytes:
        if self.is_s3:
            return self.s3.get_object(Bucket=self.settings.s3_bucket, Key=self._key(uri))["Body"].read()
        return Path(uri).read_bytes()

    def write(self, uri: str, data: bytes) -> None:
        """Write as a worker does: straight to storage, creating no folders but those the path needs."""
        if self.is_s3:
            self.s3.put_object(Bucket=self.settings.s3_bucket, Key=self._key(uri), Body=data)
            return
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def pending_uploads(self) -> list[dict[str, Any]]:
        """Multipart uploads begun and neither completed nor aborted (always none on disk)."""
        if not self.is_s3:
            return []
        return self.s3.list_multipart_uploads(Bucket=self.settings.s3_bucket).get("Uploads", [])


@pytest.fixture
def raw_storage(request: pytest.FixtureRequest, settings: Settings) -> RawStorage:
    return RawStorage(settings, request.getfixturevalue("s3_admin") if settings.filesystem == "s3" else None)
