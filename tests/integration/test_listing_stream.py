"""Issue 11: listings stream sorted by path as the tree is walked, refuse (413) trees past
MAX_LISTING_ENTRIES before the first byte, and stop visibly when something fails part-way."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from decode_userapi.container import build_services
from decode_userapi.domain.errors import StorageUnavailable
from decode_userapi.domain.files import Entry, FileInfo, UserPath
from decode_userapi.entrypoints.http.app import create_app
from decode_userapi.entrypoints.http.files import json_array
from decode_userapi.services.files import FileService
from tests.integration.harness import make_user, stacks
from tests.integration.test_fuzz import LiveServer

# Names that sort around "/": " " < "-" < "." < "/" < "0" < "A" < "_" < "a" < "é" < "😀".
TRICKY = [
    "a/x", "a b", "a-b/y", "a.txt", "a0", "a/b/c", "a/b-c", "a/b.d/e", "ab", "\u00e9", "Z", "a/\U0001f600",
    "a_", "a/b/-", "-", "a.b/c", "a/b c/d",
]


async def upload(client: AsyncTestClient, headers: dict[str, str], path: str) -> None:
    folder, _, name = f"data/{path}".rpartition("/")
    r = await client.post(f"/files/{folder}/upload", headers=headers, files={"file": (name, b"1")})
    assert r.status_code == 201, r.text


def folders_of(paths: list[str]) -> set[str]:
    return {"/".join(p.split("/")[:depth]) + "/" for p in paths for depth in range(1, p.count("/") + 1)}


async def test_listing_is_sorted_by_path_over_tricky_names(client, alice) -> None:
    for path in TRICKY:
        await upload(client, alice.headers, path)
    files = [f"data/{p}" for p in TRICKY]
    r = await client.get("/files/data/?recursive=true", headers=alice.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert [f["path"] for f in r.json()] == sorted({*files, *folders_of(files)} - {"data/"})
    r = await client.get("/files/data/?recursive=true&show_dirs=false", headers=alice.headers)
    assert [f["path"] for f in r.json()] == sorted(files)
    r = await client.get("/files/data/", headers=alice.headers)
    level = [p for p in sorted({*files, *folders_of(files)}) if p.rstrip("/").count("/") == 1]
    assert [f["path"] for f in r.json()] == level
    r = await client.get("/files/?recursive=true", headers=alice.headers)
    assert [f["path"] for f in r.json()] == sorted(f["path"] for f in r.json())


@pytest.fixture
async def small_limit_client(settings) -> AsyncIterator[AsyncTestClient]:
    settings = msgspec.structs.replace(settings, max_listing_entries=5)
    async with AsyncTestClient(app=create_app(build_services(settings))) as client:
        yield client


@stacks("local-sqlite", "s3-postgres")
async def test_past_max_listing_entries_is_413_before_any_byte(small_limit_client) -> None:
    client = small_limit_client
    alice = await make_user(client, "alice@example.org")
    for i in range(5):
        await upload(client, alice.headers, f"many/f{i}")
    r = await client.get("/files/data/?recursive=true", headers=alice.headers)  # many/ and 5 files
    assert r.status_code == 413 and "more than 5 files and folders" in r.json()["detail"]
    r = await client.get("/files/data/many/download", headers=alice.headers)
    assert r.status_code == 200  # 5 members: at the limit
    await upload(client, alice.headers, "many/f5")
    r = await client.get("/files/data/many/download", headers=alice.headers)
    assert r.status_code == 413 and "detail" in r.json()
    r = await client.get("/files/data/many/", headers=alice.headers)
    assert r.status_code == 413
    r = await client.get("/files/data/", headers=alice.headers)  # one level: just many/
    assert r.status_code == 200 and r.json() == [{"path": "data/many/", "type": "directory", "size": ""}]


async def test_json_array_is_whole_or_visibly_cut() -> None:
    async def pages(*items: list[FileInfo], fail: bool = False) -> AsyncGenerator[list[FileInfo], None]:
        for page in items:
            yield page
        if fail:
            raise StorageUnavailable("the disk went away")

    a, b = FileInfo("a", "file", "1 Byte"), FileInfo("b/", "directory", "")
    assert b"".join([c async for c in json_array(pages())]) == b"[]"
    assert b"".join([c async for c in json_array(pages([], [a], [], [b]))]) == msgspec.json.encode([a, b])
    # A name on disk that is not UTF-8 is shown with U+FFFD rather than failing the listing.
    odd = FileInfo("data/\udcff.txt", "file", "1 Byte")
    assert msgspec.json.decode(b"".join([c async for c in json_array(pages([odd]))])) == [
        {"path": "data/\ufffd.txt", "type": "file", "size": "1 Byte"}
    ]
    sent = []
    with pytest.raises(StorageUnavailable):  # noqa: PT012 - it is raised part-way through the iteration
        async for chunk in json_array(pages([a], fail=True)):
            sent.append(chunk)
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(b"".join(sent))  # what a client got is no JSON array


class FailingPart:
    """The app's storage; the first recursive walk (the one whose pages are sent, after a counting
    walk) fails after its second page."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage
        self._walks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    async def walk(self, user: str, path: UserPath, *, recursive: bool) -> AsyncGenerator[list[Entry], None]:
        self._walks += recursive
        fails = recursive and self._walks == 1
        pages = 0
        async for page in self._storage.walk(user, path, recursive=recursive):
            yield page
            pages += 1
            if fails and pages == 2:
                raise StorageUnavailable("the disk went away")


@stacks("local-sqlite")
def test_a_failure_after_the_first_byte_cuts_the_answer_short(settings) -> None:
    services = build_services(settings)
    storage = services.adapters.file_storage()
    storage.page_size = 2
    files = FileService(FailingPart(storage), prefetch_entries=1)  # stream from the second page on
    with services.files.override(files), LiveServer(create_app(services)) as server, httpx.Client(base_url=server.url) as http:
        assert http.post("/user", data={"username": "alice", "password": "correct-horse-1"}).status_code == 201
        token = http.post("/token", data={"username": "alice", "password": "correct-horse-1"}).json()["id_token"]
        auth = {"Authorization": f"Bearer {token}"}
        for name in ("a", "b", "c"):
            http.post("/files/data/upload", headers=auth, files={"file": (name, b"1")})
        assert http.get("/files/data/", headers=auth).status_code == 200  # one level: no failure
        with http.stream("GET", "/files/?recursive=true", headers=auth) as r:
            assert r.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):  # the chunked body never ends
                r.read()


@stacks("local-sqlite")
async def test_names_on_disk_that_are_not_utf8_are_listed_and_zipped(client, alice, settings) -> None:
    import io
    import os
    import zipfile

    await upload(client, alice.headers, "odd/ok.txt")
    folder = os.path.join(os.fsencode(settings.user_data_root_path), b"alice@example.org", b"data", b"odd")
    with open(os.path.join(folder, b"caf\xe9.txt"), "wb") as f:  # noqa: ASYNC230 - test setup  # Latin-1, as a job might write it
        f.write(b"bytes")
    r = await client.get("/files/data/odd/?recursive=true", headers=alice.headers)
    assert r.status_code == 200
    assert [f["path"] for f in r.json()] == ["data/odd/caf\ufffd.txt", "data/odd/ok.txt"]
    r = await client.get("/files/data/odd/download", headers=alice.headers)
    assert r.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(archive.namelist()) == ["caf\ufffd.txt", "ok.txt"]
    assert archive.read("caf\ufffd.txt") == b"bytes"
