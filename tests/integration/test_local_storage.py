"""LocalFileStorage beyond the contract: symbolic links on disk, storage URIs, temporary files."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from decode_userapi.adapters.storage.local import LocalFileStorage
from decode_userapi.domain.errors import Conflict, NotFound
from decode_userapi.domain.files import MAX_DEPTH, UserPath

P = UserPath.parse


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[LocalFileStorage]:
    storage = LocalFileStorage(tmp_path / "root")
    await storage.start()
    await storage.write("bob", P("data/secret"), stream(b"bob's secret"))
    await storage.mkdir("alice", P("data/"))
    yield storage
    await storage.aclose()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every user's tree, with one file in it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "passwd").write_bytes(b"root:x:0:0")
    return tmp_path / "outside"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def untouched(storage: LocalFileStorage, outside: Path) -> Iterator[None]:
    """Bob's tree and the folder outside the root end each test as they started it."""
    folders = (storage.root / "bob", outside)
    before = [snapshot(folder) for folder in folders]
    yield
    assert [snapshot(folder) for folder in folders] == before


@pytest.fixture(params=["other-user", "outside", "outside-file"])
def planted(
    request: pytest.FixtureRequest, storage: LocalFileStorage, outside: Path, untouched: None
) -> Path:
    """A link at alice's `data/link` to bob's data folder, to a folder outside the root, or to a file."""
    target = {
        "other-user": storage.root / "bob" / "data",
        "outside": outside,
        "outside-file": outside / "passwd",
    }[request.param]
    os.symlink(target, storage.root / "alice" / "data" / "link")
    return target


async def read(storage: LocalFileStorage, path: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read("alice", P(path))])


async def test_links_are_not_listed_or_descended(storage: LocalFileStorage, planted: Path) -> None:
    for recursive in (False, True):
        assert await storage.list("alice", P("data/"), recursive=recursive) == []
    with pytest.raises(NotFound):
        await storage.list("alice", P("data/link/"), recursive=False)


@pytest.mark.parametrize("path", ["data/link", "data/link/", "data/link/secret", "data/link/passwd"])
async def test_links_are_not_stated_or_read(storage: LocalFileStorage, planted: Path, path: str) -> None:
    assert await storage.stat("alice", P(path)) is None
    with pytest.raises(NotFound):
        await read(storage, path)


@pytest.mark.parametrize("path", ["data/link/secret", "data/link/passwd", "data/link/new"])
async def test_writes_through_links_are_refused(storage: LocalFileStorage, planted: Path, path: str) -> None:
    with pytest.raises(Conflict):
        await storage.write("alice", P(path), stream(b"evil"))
    with pytest.raises(Conflict):
        await storage.mkdir("alice", P(path + "/"))


async def test_writing_onto_a_link_replaces_the_link_not_its_target(
    storage: LocalFileStorage, planted: Path
) -> None:
    await storage.write("alice", P("data/link"), stream(b"mine"))
    assert not (storage.root / "alice" / "data" / "link").is_symlink()
    assert await read(storage, "data/link") == b"mine"


async def test_renames_through_links_are_refused(storage: LocalFileStorage, planted: Path) -> None:
    await storage.write("alice", P("data/mine"), stream(b"mine"))
    for source in ("data/link/secret", "data/link/passwd", "data/link"):
        with pytest.raises(NotFound):
            await storage.rename("alice", P(source), P("data/stolen"))
    with pytest.raises(Conflict):
        await storage.rename("alice", P("data/mine"), P("data/link/mine"))
    with pytest.raises(Conflict):
        await storage.rename("alice", P("data/mine"), P("data/link"))


async def test_deleting_a_link_removes_only_the_link(storage: LocalFileStorage, planted: Path) -> None:
    await storage.delete("alice", P("data/link/secret"))
    await storage.delete("alice", P("data/link/passwd"))
    assert (storage.root / "alice" / "data" / "link").is_symlink()
    await storage.delete("alice", P("data/link/"))
    assert not os.path.lexists(storage.root / "alice" / "data" / "link")
    await storage.write("alice", P("data/d/f"), stream(b""))
    os.symlink(planted, storage.root / "alice" / "data" / "d" / "link")
    await storage.delete("alice", UserPath.root())
    assert not (storage.root / "alice").exists()


async def test_a_linked_user_folder_is_not_followed(
    storage: LocalFileStorage, outside: Path, untouched: None
) -> None:
    os.symlink(outside, storage.root / "mallory")
    assert await storage.stat("mallory", P("passwd")) is None
    with pytest.raises(NotFound):
        await storage.list("mallory", UserPath.root(), recursive=True)
    with pytest.raises(Conflict):
        await storage.write("mallory", P("x"), stream(b"evil"))


async def test_storage_uri_is_absolute_and_normalised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    storage = LocalFileStorage("../../store/./users")
    root = (tmp_path / "store" / "users").resolve()
    assert storage.root == root
    assert storage.storage_uri("alice", P("output/job/")) == f"{root}/alice/output/job/"
    assert storage.storage_uri("alice", P("data/f.txt")) == f"{root}/alice/data/f.txt"
    assert storage.storage_uri("alice", UserPath.root()) == f"{root}/alice/"
    monkeypatch.chdir(tmp_path)  # the root was resolved once, at construction
    await storage.write("alice", P("data/f.txt"), stream(b"x"))
    assert (root / "alice" / "data" / "f.txt").read_bytes() == b"x"


async def test_root_is_created_lazily(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "later")
    await storage.mkdir("alice", P("data/"))
    assert (tmp_path / "later" / "alice" / "data").is_dir()


async def test_temporary_files_are_hidden(storage: LocalFileStorage) -> None:
    (storage.root / "alice" / "data" / ".upload-0123abcd.part").write_bytes(b"half")
    (storage.root / "alice" / "data" / ".hidden").write_bytes(b"shown")
    listed = await storage.list("alice", P("data/"), recursive=True)
    assert [str(e.path) for e in listed] == ["data/.hidden"]


async def test_failed_write_removes_its_temporary_file(storage: LocalFileStorage) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"part"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await storage.write("alice", P("data/f"), failing())
    assert os.listdir(storage.root / "alice" / "data") == []


async def test_listing_comes_in_the_order_of_the_path_strings(storage: LocalFileStorage) -> None:
    # Each folder is sorted with a "/" after its folders' names, and followed by its contents: names
    # that sort before "/" (space, "-", ".") come before the folder "a/", as in the strings' order.
    for name in ("data/a/x", "data/a b", "data/a-b/y", "data/a.txt", "data/b"):
        await storage.write("alice", P(name), stream(b"1"))
    listed = await storage.list("alice", P("data/"), recursive=True)
    assert [str(e.path) for e in listed] == [
        "data/a b", "data/a-b/", "data/a-b/y", "data/a.txt", "data/a/", "data/a/x", "data/b",
    ]


@pytest.mark.parametrize("batch", [1, 5, 1 << 20])
async def test_writes_gather_chunks_into_batches(tmp_path: Path, batch: int) -> None:
    storage = LocalFileStorage(tmp_path, write_batch=batch)
    chunks = [bytes([i]) * (i % 7) for i in range(200)]
    entry = await storage.write("alice", P("data/f"), stream(*chunks))
    assert entry.size == sum(map(len, chunks))
    assert (tmp_path / "alice" / "data" / "f").read_bytes() == b"".join(chunks)


async def test_a_reused_write_buffer_is_copied(tmp_path: Path) -> None:
    async def reusing() -> AsyncIterator[bytes]:
        buffer = bytearray(3)
        for i in range(4):
            buffer[:] = bytes([i]) * 3
            yield buffer  # type: ignore[misc]  # a producer that refills one buffer

    await LocalFileStorage(tmp_path).write("alice", P("data/f"), reusing())
    assert (tmp_path / "alice" / "data" / "f").read_bytes() == b"\0\0\0\1\1\1\2\2\2\3\3\3"


def _leftover(folder: Path, name: str, age: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half an upload")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


async def test_stale_upload_temporary_files_are_removed(tmp_path: Path, outside: Path) -> None:
    storage = LocalFileStorage(tmp_path / "root", cleanup_interval=None)
    root = storage.root
    stale = [
        _leftover(root / "alice" / "data", ".upload-0123456789abcdef.part", 7200),
        _leftover(root / "bob" / "data" / "deep" / "er", ".upload-fedcba9876543210.part", 7200),
    ]
    live = _leftover(root / "alice" / "data", ".upload-1111111111111111.part", 60)  # being written
    kept = [
        live,
        _leftover(root / "alice" / "data", "results.part", 7200),  # a user's file, however old
        _leftover(root / "alice" / "data", ".upload-notes.txt", 7200),
    ]
    # A link to a folder outside, holding what looks like a temporary file: never followed.
    (outside / ".upload-0000000000000000.part").write_bytes(b"not ours")
    os.utime(outside / ".upload-0000000000000000.part", (0, 0))
    (root / "alice" / "data" / "link").symlink_to(outside, target_is_directory=True)
    assert await storage.remove_leftovers(datetime.now(UTC) - timedelta(hours=1)) == 2
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept) and (outside / ".upload-0000000000000000.part").exists()


async def test_stale_temporary_files_are_removed_at_start_and_then_hourly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = _leftover(root / "alice" / "data", ".upload-0123456789abcdef.part", 7200)
    storage = LocalFileStorage(root, leftover_age=3600, cleanup_interval=0.05)
    await storage.start()
    try:
        for _ in range(100):
            if not first.exists():
                break
            await asyncio.sleep(0.02)
        assert not first.exists()  # at start
        second = _leftover(root / "bob" / "data", ".upload-fedcba9876543210.part", 7200)
        for _ in range(100):
            if not second.exists():
                break
            await asyncio.sleep(0.02)
        assert not second.exists()  # a round later
    finally:
        await storage.aclose()
    third = _leftover(root / "bob" / "data", ".upload-aaaaaaaaaaaaaaaa.part", 7200)
    await asyncio.sleep(0.2)
    assert third.exists()  # closed: no more rounds


async def test_a_tree_deeper_than_any_path_is_listed_to_that_depth(storage: LocalFileStorage) -> None:
    # A job may nest folders deeper than a client can name (MAX_DEPTH): the walk stops there, so
    # it never holds a descriptor per level of an unbounded tree.
    deep = storage.root / "alice" / "data"
    for level in range(100):
        deep = deep / f"l{level}"
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")
    listed = await storage.list("alice", P("data/"), recursive=True)
    assert len(listed) == MAX_DEPTH - 1 and max(len(e.path.parts) for e in listed) == MAX_DEPTH
    assert await storage.count("alice", P("data/"), recursive=True, limit=1000) == len(listed)
