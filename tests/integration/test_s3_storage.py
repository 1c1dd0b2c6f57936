"""S3FileStorage beyond the contract: multipart uploads and copies, pagination, batch deletes,
pre-signed requests, keys written by others, and faults. Runs on moto's server (`local_aws`)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aioboto3
import boto3
import httpx
import pytest

from decode_userapi.adapters.storage.s3 import S3FileStorage
from decode_userapi.domain.errors import InvalidPath, StorageUnavailable
from decode_userapi.domain.files import MAX_DEPTH, Entry, UserPath
from tests.fakes.aws import LocalAws

P = UserPath.parse
MiB = 1024**2
EXPIRY = 600
MAX_UPLOAD = 3 * MiB


@pytest.fixture(scope="session")
def admin(local_aws: LocalAws) -> Any:
    """A plain boto3 client, to look at the bucket behind the adapter's back."""
    return boto3.client("s3", **local_aws.client_kwargs())


@pytest.fixture(scope="session")
def aws_session() -> aioboto3.Session:
    """One session for the adapters of the run: it loads the service description once."""
    return aioboto3.Session()


@pytest.fixture
def bucket(admin: Any, local_aws: LocalAws) -> str:
    name = f"test-{uuid.uuid4().hex}"
    admin.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": local_aws.region})
    return name


@pytest.fixture
async def storage(bucket: str, aws_session: aioboto3.Session) -> AsyncIterator[S3FileStorage]:
    storage = S3FileStorage(
        bucket,
        "user_data",
        part_size=5 * MiB,
        list_page_size=100,
        presign_expiry=EXPIRY,
        max_upload_bytes=MAX_UPLOAD,
        session=aws_session,
    )
    await storage.start()
    yield storage
    await storage.aclose()


def keys(admin: Any, bucket: str) -> list[str]:
    return sorted(obj["Key"] for obj in admin.list_objects_v2(Bucket=bucket).get("Contents", []))


def pending_uploads(admin: Any, bucket: str) -> list[dict[str, Any]]:
    return admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def content(storage: S3FileStorage, path: str | UserPath, user: str = "alice") -> bytes:
    path = P(path) if isinstance(path, str) else path
    return b"".join([chunk async for chunk in storage.read(user, path)])


# -- multipart ------------------------------------------------------------------------------------


async def test_a_large_write_is_a_streamed_multipart_upload(
    storage: S3FileStorage, admin: Any, bucket: str
) -> None:
    data = os.urandom(20 * MiB)
    step = 3 * MiB + 1  # chunks that do not line up with the 5 MiB parts
    seen_midway: list[list[dict[str, Any]]] = []

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), step):
            if start >= 12 * MiB and not seen_midway:
                seen_midway.append(pending_uploads(admin, bucket))
            yield data[start : start + step]

    assert await storage.write("alice", P("data/big.bin"), chunks()) == Entry(P("data/big.bin"), len(data))
    assert len(seen_midway[0]) == 1  # parts went out while the body was still arriving
    head = admin.head_object(Bucket=bucket, Key="user_data/alice/data/big.bin")
    assert head["ETag"].strip('"').endswith("-4")  # a multipart object of four parts
    assert head["ContentLength"] == len(data)
    assert await content(storage, "data/big.bin") == data
    assert pending_uploads(admin, bucket) == []


@pytest.mark.parametrize("how", ["error", "cancel"])
async def test_an_interrupted_multipart_upload_leaves_nothing(
    storage: S3FileStorage, admin: Any, bucket: str, how: str
) -> None:
    await storage.write("alice", P("data/f"), stream(b"old"))
    sent, never = asyncio.Event(), asyncio.Event()
    seen: list[list[dict[str, Any]]] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield bytes(MiB)
        seen.append(pending_uploads(admin, bucket))
        sent.set()
        if how == "error":
            raise RuntimeError("client went away")
        await never.wait()

    task = asyncio.create_task(storage.write("alice", P("data/f"), chunks()))
    await sent.wait()
    if how == "cancel":
        task.cancel()
    with pytest.raises(RuntimeError if how == "error" else asyncio.CancelledError):
        await task
    assert len(seen[0]) == 1  # the multipart upload had begun
    assert pending_uploads(admin, bucket) == []
    assert keys(admin, bucket) == ["user_data/alice/data/f"]
    assert await content(storage, "data/f") == b"old"


async def test_a_file_above_the_copy_limit_is_moved_with_a_multipart_copy(
    storage: S3FileStorage, admin: Any, bucket: str
) -> None:
    storage.copy_limit, storage.copy_part_size = 6 * MiB, 5 * MiB  # S3's own limit is 5 GiB
    data = os.urandom(12 * MiB)
    await storage.write("alice", P("data/big"), stream(data))
    moved = await storage.rename("alice", P("data/big"), P("artifact/x/big"))
    assert moved == Entry(P("artifact/x/big"), len(data))
    head = admin.head_object(Bucket=bucket, Key="user_data/alice/artifact/x/big")
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB, copied part by part
    assert await content(storage, "artifact/x/big") == data
    assert await storage.stat("alice", P("data/big")) is None
    assert pending_uploads(admin, bucket) == []


# -- many keys ------------------------------------------------------------------------------------


def seed(bucket: str, objects: dict[str, bytes]) -> None:
    """Put objects straight into the S3 backend of moto's in-process server.

    Over HTTP moto serves one request at a time (behind a lock) at about 4 ms each, so 2,500
    `put_object` calls would take 10 s; the adapter's own requests below still all go over HTTP.
    """
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key, value in objects.items():
        backend.put_object(bucket, key, value)


async def test_many_keys_are_listed_across_pages_and_deleted_in_batches(admin: Any, bucket: str) -> None:
    files = [f"data/many/f{i:04d}" for i in range(2000)]
    nested = [f"data/many/sub{i % 5}/g{i:04d}" for i in range(500)]
    seed(bucket, {f"user_data/alice/{name}": name[-2:].encode() for name in files + nested})
    session = aioboto3.Session()
    pages: list[int] = []  # MaxKeys of each ListObjectsV2
    batches: list[int] = []  # keys in each DeleteObjects
    session.events.register(
        "before-parameter-build.s3.ListObjectsV2", lambda params, **_: pages.append(params.get("MaxKeys", 0))
    )
    session.events.register(
        "before-parameter-build.s3.DeleteObjects",
        lambda params, **_: batches.append(len(params["Delete"]["Objects"])),
    )
    storage = S3FileStorage(bucket, "user_data", list_page_size=100, session=session)
    await storage.start()
    try:
        level = await storage.list("alice", P("data/many/"), recursive=False)
        subs = [f"data/many/sub{k}/" for k in range(5)]
        assert [str(e.path) for e in level] == [*files, *subs]
        assert all(e.size == 2 for e in level[:2000])
        assert pages == [100] * 21  # 2,005 keys and common prefixes, 100 a page
        everything = await storage.list("alice", P("data/"), recursive=True)
        assert sorted(str(e.path) for e in everything) == sorted(["data/many/", *files, *nested, *subs])
        assert len(pages) == 21 + 25

        await storage.delete("alice", P("data/many/"))
        assert batches == [1000, 1000, 500]
        assert await storage.list("alice", P("data/"), recursive=True) == []
        assert keys(admin, bucket) == ["user_data/alice/data/"]  # the marker that keeps data/
    finally:
        await storage.aclose()


# -- pre-signed requests --------------------------------------------------------------------------


async def test_a_presigned_post_uploads_as_a_browser_would(storage: S3FileStorage) -> None:
    await storage.mkdir("alice", P("data/inbox/"))
    request = await storage.upload_request("alice", P("data/inbox/"))
    assert request is not None and request.method == "post" and request.headers == {}
    async with httpx.AsyncClient() as http:
        # httpx writes the form fields first and the file last, as a browser's form does.
        response = await http.post(
            request.url, data=request.data, files={"file": ("notes.txt", b"hello from a form", "text/plain")}
        )
    assert response.is_success, response.text
    assert await content(storage, "data/inbox/notes.txt") == b"hello from a form"
    listed = await storage.list("alice", P("data/inbox/"), recursive=False)
    assert listed == [Entry(P("data/inbox/notes.txt"), 17)]


@pytest.mark.parametrize(
    ("folder", "prefix"), [("data/inbox/", "user_data/alice/data/inbox/"), ("", "user_data/alice/")]
)
async def test_the_presigned_post_policy_keeps_uploads_in_the_folder(
    storage: S3FileStorage, bucket: str, folder: str, prefix: str
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    request = await storage.upload_request("alice", P(folder))
    after = datetime.now(UTC)
    assert request is not None and request.data["key"] == prefix + "${filename}"
    policy = json.loads(base64.b64decode(request.data["policy"]))
    assert ["starts-with", "$key", prefix] in policy["conditions"]
    assert {"bucket": bucket} in policy["conditions"]
    assert ["content-length-range", 0, MAX_UPLOAD] in policy["conditions"]
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(seconds=EXPIRY) <= expires <= after + timedelta(seconds=EXPIRY)


async def test_a_presigned_get_downloads_the_bytes(storage: S3FileStorage) -> None:
    await storage.write("alice", P("output/job/result.csv"), stream(b"a,b\n1,2\n"))
    request = await storage.download_request("alice", P("output/job/result.csv"))
    assert request is not None and request.method == "get" and request.data == {}
    assert f"X-Amz-Expires={EXPIRY}" in request.url
    async with httpx.AsyncClient() as http:
        response = await http.get(request.url)
    assert response.status_code == 200 and response.content == b"a,b\n1,2\n"


# -- keys, folders --------------------------------------------------------------------------------


def test_storage_uri() -> None:
    storage = S3FileStorage("bkt", "/user_data/")
    assert storage.storage_uri("alice", P("data/f.txt")) == "s3://bkt/user_data/alice/data/f.txt"
    assert storage.storage_uri("alice", P("output/job/")) == "s3://bkt/user_data/alice/output/job/"
    assert storage.storage_uri("alice", UserPath.root()) == "s3://bkt/user_data/alice/"
    assert S3FileStorage("bkt").storage_uri("bob", P("data/x")) == "s3://bkt/bob/data/x"


async def test_an_empty_root_puts_users_at_the_top_of_the_bucket(bucket: str, admin: Any) -> None:
    storage = S3FileStorage(bucket)
    await storage.start()
    try:
        await storage.write("alice", P("data/f"), stream(b"x"))
        await storage.mkdir("alice", P("config/"))
        assert keys(admin, bucket) == ["alice/config/", "alice/data/f"]
        assert [str(e.path) for e in await storage.list("alice", UserPath.root(), recursive=True)] == [
            "config/", "data/", "data/f",
        ]
    finally:
        await storage.aclose()


async def test_folders_written_by_others_and_the_folders_left_behind(
    storage: S3FileStorage, admin: Any, bucket: str
) -> None:
    # A worker writes keys directly: no folder markers.
    admin.put_object(Bucket=bucket, Key="user_data/alice/output/job1/log/out.txt", Body=b"done")
    assert await storage.stat("alice", P("output/job1")) == Entry(P("output/job1/"), None)
    assert [str(e.path) for e in await storage.list("alice", P("output/"), recursive=True)] == [
        "output/job1/", "output/job1/log/", "output/job1/log/out.txt",
    ]
    # The folder a file was in outlives it, as on disk.
    await storage.delete("alice", P("output/job1/log/out.txt"))
    assert [str(e.path) for e in await storage.list("alice", P("output/"), recursive=True)] == [
        "output/job1/", "output/job1/log/",
    ]


async def test_keys_no_path_could_name_do_not_break_listings(
    storage: S3FileStorage, admin: Any, bucket: str
) -> None:
    for name in ("back\\slash", "%2e%2e", "dot. ", "a//b", "../escape", "./here", "..", "c/./d"):
        admin.put_object(Bucket=bucket, Key=f"user_data/alice/data/{name}", Body=b"odd")
    # Names UserPath refuses are listed as they are (as on disk); "", "." and ".." never are.
    listed = ["data/%2e%2e", "data/a/", "data/back\\slash", "data/c/", "data/dot. "]
    level = await storage.list("alice", P("data/"), recursive=False)
    assert [str(e.path) for e in level] == listed
    everything = await storage.list("alice", P("data/"), recursive=True)
    assert [str(e.path) for e in everything] == listed
    assert await content(storage, level[2].path) == b"odd"  # and read back through the listed path


# -- faults ---------------------------------------------------------------------------------------


async def test_an_unreachable_endpoint_is_storage_unavailable_quickly(local_aws: LocalAws) -> None:
    storage = S3FileStorage("bkt", endpoint_url="http://127.0.0.1:1", connect_timeout=0.5, max_attempts=1)
    await storage.start()
    started = time.monotonic()
    try:
        calls = [
            storage.stat("alice", P("data/f")),
            storage.list("alice", P("data/"), recursive=False),
            storage.mkdir("alice", P("data/d/")),
            storage.write("alice", P("data/f"), stream(b"x")),
            content(storage, "data/f"),
            storage.rename("alice", P("data/f"), P("data/g")),
            storage.delete("alice", P("data/")),
        ]
        for call in calls:
            with pytest.raises(StorageUnavailable, match="cannot be reached"):
                await call
    finally:
        await storage.aclose()
    assert time.monotonic() - started < 5


async def test_a_missing_bucket_is_storage_unavailable(local_aws: LocalAws) -> None:
    storage = S3FileStorage(f"missing-{uuid.uuid4().hex}", "user_data")
    await storage.start()
    try:
        for call in (
            storage.stat("alice", P("data/f")),
            storage.list("alice", P(""), recursive=True),
            content(storage, "data/f"),
            storage.write("alice", P("data/f"), stream(b"x")),
        ):
            with pytest.raises(StorageUnavailable, match="does not exist"):
                await call
    finally:
        await storage.aclose()


async def test_missing_credentials_are_storage_unavailable(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = S3FileStorage("bkt", "user_data", max_attempts=1)
    await storage.start()
    try:
        with pytest.raises(StorageUnavailable, match="credentials"):
            await storage.stat("alice", P("data/f"))
    finally:
        await storage.aclose()


async def test_a_path_too_long_for_an_s3_key_is_invalid(storage: S3FileStorage) -> None:
    path = P("data/" + "/".join(["a" * 252] * 4))  # a valid path, but 1,032 bytes as a key
    with pytest.raises(InvalidPath):
        await storage.write("alice", path, stream(b"x"))


async def test_stale_multipart_uploads_are_aborted(storage: S3FileStorage, admin: Any, bucket: str) -> None:
    # Two left by crashed uploads in users' trees, one outside the storage's root (not ours).
    for key in ("user_data/alice/data/big.tif", "user_data/bob/data/x.bin", "elsewhere/y.bin"):
        admin.create_multipart_upload(Bucket=bucket, Key=key)
    begun = {u["Key"]: u["Initiated"] for u in pending_uploads(admin, bucket)}
    # None is older than a cutoff before they began.
    assert await storage.remove_leftovers(min(begun.values()) - timedelta(seconds=1)) == 0
    assert len(pending_uploads(admin, bucket)) == 3
    # A cutoff after they began (as if a day had passed): ours are aborted, the other one is kept.
    assert await storage.remove_leftovers(max(begun.values()) + timedelta(seconds=1)) == 2
    assert [u["Key"] for u in pending_uploads(admin, bucket)] == ["elsewhere/y.bin"]
    assert await storage.remove_leftovers(datetime.now(UTC) + timedelta(days=1)) == 0


async def test_the_hourly_cleanup_runs_in_the_background_until_closed(
    bucket: str, admin: Any, aws_session: aioboto3.Session
) -> None:
    admin.create_multipart_upload(Bucket=bucket, Key="user_data/alice/data/big.tif")
    # leftover_age=-60: every upload counts as stale, as a day later.
    storage = S3FileStorage(
        bucket, "user_data", session=aws_session, leftover_age=-60.0, cleanup_interval=0.05, cleanup_delay=0.0
    )
    await storage.start()
    try:
        for _ in range(100):
            if not pending_uploads(admin, bucket):
                break
            await asyncio.sleep(0.05)
        assert not pending_uploads(admin, bucket)
    finally:
        await storage.aclose()
    # Closed: no more rounds.
    admin.create_multipart_upload(Bucket=bucket, Key="user_data/alice/data/later.tif")
    await asyncio.sleep(0.2)
    assert [u["Key"] for u in pending_uploads(admin, bucket)] == ["user_data/alice/data/later.tif"]


async def test_keys_deeper_than_any_path_are_listed_to_that_depth(storage: S3FileStorage, admin: Any, bucket: str) -> None:
    deep = "/".join(f"l{level}" for level in range(100))
    admin.put_object(Bucket=bucket, Key=f"user_data/alice/data/{deep}/f", Body=b"x")
    listed = await storage.list("alice", UserPath.parse("data/"), recursive=True)
    assert len(listed) == MAX_DEPTH - 1 and max(len(e.path.parts) for e in listed) == MAX_DEPTH
    assert all(e.is_dir for e in listed)
