"""Contract tests for FileStorage: every test runs against every adapter."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import aioboto3
import boto3
import pytest

from decode_userapi.adapters.storage.local import LocalFileStorage
from decode_userapi.adapters.storage.memory import InMemoryFileStorage
from decode_userapi.adapters.storage.s3 import S3FileStorage
from decode_userapi.domain.errors import Conflict, NotFound
from decode_userapi.domain.files import Entry, UserPath
from decode_userapi.ports.storage import FileStorage
from tests.fakes.aws import LocalAws

P = UserPath.parse


@pytest.fixture(scope="session")
def aws_session() -> aioboto3.Session:
    """One session for every S3 adapter of the run: it loads the service description once."""
    return aioboto3.Session()


@pytest.fixture(scope="session")
def new_bucket(local_aws: LocalAws) -> Callable[[], str]:
    """Makes a fresh, empty bucket on the local AWS and names it."""
    client = boto3.client("s3", **local_aws.client_kwargs())

    def make() -> str:
        name = f"test-{uuid.uuid4().hex}"
        client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": local_aws.region})
        return name

    return make


@pytest.fixture(params=["local", "memory", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStorage]:
    adapter: FileStorage
    if request.param == "local":
        adapter = LocalFileStorage(tmp_path / "root", chunk_size=1 << 16)
    elif request.param == "memory":
        adapter = InMemoryFileStorage(chunk_size=1 << 16)
    else:
        # No endpoint given: the AWS SDK's variables (AWS_ENDPOINT_URL, ...) set by `local_aws` apply.
        bucket = request.getfixturevalue("new_bucket")()
        adapter = S3FileStorage(bucket, "user_data", session=request.getfixturevalue("aws_session"))
    await adapter.start()
    yield adapter
    await adapter.aclose()


async def stream(chunks: Iterable[bytes], fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(chunks):
        if i == fail_after:
            raise RuntimeError("client went away")
        yield chunk


async def put(storage: FileStorage, path: str, data: bytes = b"x", user: str = "alice") -> Entry:
    return await storage.write(user, P(path), stream([data]))


async def content(storage: FileStorage, path: str, user: str = "alice") -> bytes:
    return b"".join([chunk async for chunk in storage.read(user, P(path))])


async def listing(storage: FileStorage, path: str, recursive: bool, user: str = "alice") -> list[str]:
    return sorted(str(e.path) for e in await storage.list(user, P(path), recursive=recursive))


THREE_MIB = [bytes(range(256)) * 1024] * 12


@pytest.mark.parametrize("chunks", [[], [b""], [b"hello ", b"world"], THREE_MIB])
async def test_write_stat_read_round_trip(storage: FileStorage, chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    entry = await storage.write("alice", P("data/a/b.bin"), stream(chunks))
    assert entry == Entry(P("data/a/b.bin"), len(data))
    assert await storage.stat("alice", P("data/a/b.bin")) == entry
    assert await content(storage, "data/a/b.bin") == data


async def test_write_replaces_a_file(storage: FileStorage) -> None:
    await put(storage, "data/f", b"old content")
    await put(storage, "data/f", b"new")
    assert await content(storage, "data/f") == b"new"
    assert await storage.stat("alice", P("data/f")) == Entry(P("data/f"), 3)


async def test_stat(storage: FileStorage) -> None:
    await put(storage, "data/d/f", b"abc")
    assert await storage.stat("alice", P("data/d/")) == Entry(P("data/d/"), None)
    assert await storage.stat("alice", P("data/d")) == Entry(P("data/d/"), None)
    assert await storage.stat("alice", P("data/d/f/")) == Entry(P("data/d/f"), 3)
    assert await storage.stat("alice", P("")) == Entry(UserPath.root(), None)
    assert await storage.stat("alice", P("data/nope")) is None
    assert await storage.stat("alice", P("data/d/f/below")) is None


async def test_list_recursive_and_not(storage: FileStorage) -> None:
    await put(storage, "data/top.txt", b"12345")
    await put(storage, "data/sub/deep/leaf", b"")
    await storage.mkdir("alice", P("data/empty/"))
    assert await listing(storage, "data/", recursive=False) == ["data/empty/", "data/sub/", "data/top.txt"]
    assert await listing(storage, "data/", recursive=True) == [
        "data/empty/", "data/sub/", "data/sub/deep/", "data/sub/deep/leaf", "data/top.txt",
    ]
    assert await listing(storage, "", recursive=False) == ["data/"]
    sizes = {str(e.path): e.size for e in await storage.list("alice", P("data"), recursive=True)}
    assert sizes["data/top.txt"] == 5 and sizes["data/sub/deep/leaf"] == 0 and sizes["data/sub/"] is None


@pytest.mark.parametrize("path", ["data/missing/", "data/file/"])
async def test_list_of_a_missing_folder_or_a_file_is_not_found(storage: FileStorage, path: str) -> None:
    await put(storage, "data/file")
    with pytest.raises(NotFound):
        await storage.list("alice", P(path), recursive=False)


async def test_mkdir_nested_and_idempotent(storage: FileStorage) -> None:
    await storage.mkdir("alice", P("config/a/b/c/"))
    await storage.mkdir("alice", P("config/a/b/c/"))
    await storage.mkdir("alice", P("config/a/"))
    assert await listing(storage, "config/", recursive=True) == ["config/a/", "config/a/b/", "config/a/b/c/"]


@pytest.mark.parametrize("path", ["data/f/", "data/f/below/"])
async def test_mkdir_on_or_under_a_file_conflicts(storage: FileStorage, path: str) -> None:
    await put(storage, "data/f")
    with pytest.raises(Conflict):
        await storage.mkdir("alice", P(path))


async def test_write_under_a_file_or_onto_a_folder_conflicts(storage: FileStorage) -> None:
    await put(storage, "data/f")
    await storage.mkdir("alice", P("data/d/"))
    for path in ("data/f/g", "data/d"):
        with pytest.raises(Conflict):
            await put(storage, path)
    assert await listing(storage, "data/", recursive=True) == ["data/d/", "data/f"]


async def test_rename_a_file_creates_target_parents(storage: FileStorage) -> None:
    await put(storage, "data/f", b"abc")
    assert await storage.rename("alice", P("data/f"), P("artifact/x/y/g")) == Entry(P("artifact/x/y/g"), 3)
    assert await storage.stat("alice", P("data/f")) is None
    assert await content(storage, "artifact/x/y/g") == b"abc"


async def test_rename_an_empty_folder(storage: FileStorage) -> None:
    await storage.mkdir("alice", P("data/old/"))
    assert await storage.rename("alice", P("data/old/"), P("data/new/")) == Entry(P("data/new/"), None)
    assert await listing(storage, "data/", recursive=True) == ["data/new/"]


async def test_rename_onto_an_existing_path_conflicts(storage: FileStorage) -> None:
    await put(storage, "data/a", b"a")
    await put(storage, "data/b", b"b")
    await storage.mkdir("alice", P("data/d/"))
    for target in ("data/b", "data/d/"):
        with pytest.raises(Conflict):
            await storage.rename("alice", P("data/a"), P(target))
    assert await content(storage, "data/b") == b"b"


async def test_rename_into_itself_conflicts(storage: FileStorage) -> None:
    await storage.mkdir("alice", P("data/d/"))
    with pytest.raises(Conflict):
        await storage.rename("alice", P("data/d/"), P("data/d/e/"))


async def test_rename_of_a_missing_path_is_not_found(storage: FileStorage) -> None:
    with pytest.raises(NotFound):
        await storage.rename("alice", P("data/missing"), P("data/other"))


async def test_delete(storage: FileStorage) -> None:
    await put(storage, "data/keep")
    await put(storage, "data/f")
    await put(storage, "data/d/e/f")
    await storage.delete("alice", P("data/f"))
    await storage.delete("alice", P("data/d/"))
    await storage.delete("alice", P("data/missing"))
    await storage.delete("alice", P("nothing/here/"))
    assert await listing(storage, "data/", recursive=True) == ["data/keep"]
    await storage.delete("alice", UserPath.root())
    assert await listing(storage, "", recursive=True) == []


async def test_a_folder_outlives_what_it_held(storage: FileStorage) -> None:
    await put(storage, "data/a/f")
    await put(storage, "data/b/g")
    await storage.mkdir("alice", P("data/c/d/"))
    await storage.delete("alice", P("data/a/f"))
    await storage.rename("alice", P("data/b/g"), P("artifact/g"))
    await storage.delete("alice", P("data/c/d/"))
    assert await listing(storage, "data/", recursive=True) == ["data/a/", "data/b/", "data/c/"]


async def test_read_of_a_missing_path_or_a_folder_is_not_found(storage: FileStorage) -> None:
    await storage.mkdir("alice", P("data/d/"))
    for path in ("data/missing", "data/d", ""):
        with pytest.raises(NotFound):
            await content(storage, path)


async def test_failed_write_leaves_nothing(storage: FileStorage) -> None:
    await put(storage, "data/f", b"old")
    for path in ("data/f", "data/new"):
        with pytest.raises(RuntimeError):
            await storage.write("alice", P(path), stream([b"a" * 1500] * 5, fail_after=2))
    assert await listing(storage, "data/", recursive=True) == ["data/f"]
    assert await content(storage, "data/f") == b"old"


async def test_cancelled_write_leaves_nothing(storage: FileStorage) -> None:
    started, never = asyncio.Event(), asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"first chunk"
        started.set()
        await never.wait()
        yield b"never sent"

    await storage.mkdir("alice", P("data/"))
    task = asyncio.create_task(storage.write("alice", P("data/f"), stalled()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await storage.list("alice", P("data/"), recursive=True) == []


async def test_users_are_isolated(storage: FileStorage) -> None:
    await put(storage, "data/secret", b"bob's", user="bob")
    await put(storage, "data/mine", user="alice")
    assert await listing(storage, "", recursive=True, user="alice") == ["data/", "data/mine"]
    assert await storage.stat("alice", P("data/secret")) is None
    with pytest.raises(NotFound):
        await content(storage, "data/secret", user="alice")
    await storage.delete("alice", UserPath.root())
    assert await content(storage, "data/secret", user="bob") == b"bob's"
    assert storage.storage_uri("alice", P("data/x")) != storage.storage_uri("bob", P("data/x"))


async def test_storage_uri_marks_folders(storage: FileStorage) -> None:
    assert storage.storage_uri("alice", P("output/job/")).endswith("/alice/output/job/")
    assert storage.storage_uri("alice", P("data/f.txt")).endswith("/alice/data/f.txt")


async def test_direct_requests_only_from_s3(storage: FileStorage) -> None:
    """Local and in-memory storage move bytes through this API; S3 answers with pre-signed requests
    (checked in depth in test_s3_storage.py)."""
    upload = await storage.upload_request("alice", P("data/"))
    download = await storage.download_request("alice", P("data/f"))
    if isinstance(storage, S3FileStorage):
        assert upload is not None and upload.method == "post" and "policy" in upload.data
        assert download is not None and download.method == "get"
    else:
        assert upload is None and download is None


# Names around "/" in code point order: " " < "-" < "." < "/" < "0" < "A" < "_" < "a" < "é" < "😀".
TRICKY = [
    "data/a/x", "data/a b", "data/a-b/y", "data/a.txt", "data/a0", "data/a/b/c", "data/a/b-c", "data/a/b.d/e",
    "data/ab", "data/\u00e9", "data/Z", "data/a/\U0001f600", "data/a_", "data/a/b/-", "data/-", "data/a.b/c",
]


@pytest.fixture(params=["local", "memory", "s3"])
async def paged(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStorage]:
    """An adapter whose walks come in pages of 2 entries (S3: 2 keys a request)."""
    adapter: FileStorage
    if request.param == "local":
        adapter = LocalFileStorage(tmp_path / "root", page_size=2, cleanup_interval=None)
    elif request.param == "memory":
        adapter = InMemoryFileStorage(page_size=2)
    else:
        bucket = request.getfixturevalue("new_bucket")()
        adapter = S3FileStorage(
            bucket, "user_data", list_page_size=2, cleanup_interval=None, session=request.getfixturevalue("aws_session")
        )
    await adapter.start()
    yield adapter
    await adapter.aclose()


@pytest.mark.parametrize("recursive", [True, False])
async def test_walk_comes_in_pages_in_the_order_of_the_path_strings(paged: FileStorage, recursive: bool) -> None:
    for path in TRICKY:
        await put(paged, path)
    await paged.mkdir("alice", P("data/empty/"))
    pages = [page async for page in paged.walk("alice", P("data/"), recursive=recursive)]
    walked = [str(e.path) for page in pages for e in page]
    assert len(pages) > 1 and all(pages)
    assert walked == sorted(walked)  # the order clients get: a folder's "/" after " ", "-" and "."
    assert walked == [str(e.path) for e in await paged.list("alice", P("data/"), recursive=recursive)]
    expected = {*TRICKY, "data/empty/"}
    expected |= {"/".join(p.split("/")[:depth]) + "/" for p in TRICKY for depth in range(2, p.count("/") + 1)}
    if not recursive:
        expected = {p for p in expected if p.rstrip("/").count("/") == 1}
    assert walked == sorted(expected)


async def test_a_walk_stopped_early_releases_what_it_holds(paged: FileStorage) -> None:
    for path in TRICKY:
        await put(paged, path)
    open_files = len(os.listdir("/proc/self/fd"))
    pages = paged.walk("alice", P("data/"), recursive=True)
    first = await pages.__anext__()
    assert [str(e.path) for e in first] == ["data/-", "data/Z"]
    await pages.aclose()
    if isinstance(paged, LocalFileStorage):
        assert len(os.listdir("/proc/self/fd")) == open_files  # the folders it had open are closed


async def test_walk_of_a_missing_folder_is_not_found(paged: FileStorage) -> None:
    with pytest.raises(NotFound):
        async for _ in paged.walk("alice", P("data/missing/"), recursive=True):
            pass
    assert [page async for page in paged.walk("alice", P(""), recursive=True)] == []


@pytest.mark.parametrize("recursive", [True, False])
async def test_count_agrees_with_walk_and_stops_past_its_limit(paged: FileStorage, recursive: bool) -> None:
    for path in TRICKY:
        await put(paged, path)
    walked = sum([len(page) async for page in paged.walk("alice", P("data/"), recursive=recursive)])
    assert await paged.count("alice", P("data/"), recursive=recursive, limit=10**6) == walked
    assert await paged.count("alice", P("data/"), recursive=recursive, limit=3) > 3
    in_root = walked + 1 if recursive else 1  # and data/ itself
    assert await paged.count("alice", P(""), recursive=recursive, limit=10**6) == in_root
    with pytest.raises(NotFound):
        await paged.count("alice", P("data/missing/"), recursive=recursive, limit=10)
