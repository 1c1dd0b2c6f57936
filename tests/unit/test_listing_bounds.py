"""Issue 11: listings and folder downloads walk at most MAX_LISTING_ENTRIES files and folders, refused
(413) before the first byte; the pages come sorted by path as the storage walks."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from decode_userapi.adapters.storage.memory import InMemoryFileStorage
from decode_userapi.domain.errors import NotFound, PayloadTooLarge
from decode_userapi.domain.files import Entry, UserPath
from decode_userapi.domain.identity import Principal
from decode_userapi.services.files import FileService

ALICE = Principal("alice", "alice@example.org", ("users",))
P = UserPath.parse


async def one(data: bytes = b"x") -> AsyncGenerator[bytes, None]:
    yield data


async def fill(storage: InMemoryFileStorage, count: int, folder: str = "data/many") -> None:
    for i in range(count):
        await storage.write("alice", P(f"{folder}/f{i:04d}"), one())


class GrowingStorage(InMemoryFileStorage):
    """Files appear while a listing is sent: the first walk (the one whose pages are sent, after the
    counting walk) finds `grow` more at its end than the counting walk did."""

    def __init__(self, grow: int) -> None:
        super().__init__(page_size=2)
        self.walks = 0
        self.grow = grow

    async def walk(self, user: str, path: UserPath, *, recursive: bool) -> AsyncGenerator[list[Entry], None]:
        self.walks += 1
        sent = self.walks == 1
        async for page in super().walk(user, path, recursive=recursive):
            yield page
        if sent:
            yield [Entry(UserPath(("data", f"zlate{i}")), 1) for i in range(self.grow)]


async def pages_of(service: FileService, path: str, **flags: bool) -> list[list[str]]:
    listing = await service.listing(ALICE, P(path), **flags)
    if isinstance(listing, list):  # all of it, read at once
        return [[info.path for info in listing]]
    return [[info.path for info in page] async for page in listing]


async def test_a_small_listing_is_read_whole_and_sorted() -> None:
    storage = InMemoryFileStorage(page_size=2)
    service = FileService(storage, max_listing_entries=10, prefetch_entries=5)
    await fill(storage, 3)
    listing = await service.listing(ALICE, P("data/"), recursive=True)
    assert isinstance(listing, list)  # up to prefetch_entries: one list, no pages
    assert [i.path for i in listing] == ["data/many/", "data/many/f0000", "data/many/f0001", "data/many/f0002"]
    await fill(storage, 5, "data/more")
    pages = await pages_of(service, "data/", recursive=True)  # 10 entries: pages as walked
    assert len(pages) == 5 and [p for page in pages for p in page][:2] == ["data/many/", "data/many/f0000"]
    assert await service.list(ALICE, P("data/"), recursive=True, show_dirs=False) == [
        i for i in await service.list(ALICE, P("data/"), recursive=True) if i.type == "file"
    ]


async def test_past_the_limit_is_refused_before_anything_is_sent() -> None:
    storage = InMemoryFileStorage(page_size=2)
    await fill(storage, 10)
    for prefetch in (100, 4):  # found while reading the first pages, and by the counting walk
        service = FileService(storage, max_listing_entries=10, prefetch_entries=prefetch)
        with pytest.raises(PayloadTooLarge, match="more than 10 files and folders"):
            await service.listing(ALICE, P("data/"), recursive=True)
        with pytest.raises(PayloadTooLarge):
            await service.download(ALICE, P("data/"))  # data/many/ and its 10 files
        # Exactly at the limit: all of it, in order.
        names = [p for page in await pages_of(service, "data/many/") for p in page]
        assert names == [f"data/many/f{i:04d}" for i in range(10)]
        assert (await service.download(ALICE, P("data/many/"))).filename == "many.zip"


async def test_a_missing_folder_is_refused_before_anything_is_sent() -> None:
    service = FileService(InMemoryFileStorage(), prefetch_entries=1)
    with pytest.raises(NotFound):
        await service.listing(ALICE, P("data/missing/"), recursive=True)


async def test_a_tree_that_grows_past_the_limit_while_sent_stops_part_way() -> None:
    storage = GrowingStorage(grow=6)
    await fill(storage, 4)
    service = FileService(storage, max_listing_entries=8, prefetch_entries=2)
    pages = await service.listing(ALICE, P("data/"), recursive=True)  # counted: 5 entries
    assert not isinstance(pages, list)
    sent: list[str] = []
    with pytest.raises(PayloadTooLarge):  # noqa: PT012 - it is raised part-way through the iteration
        async for page in pages:
            sent += [info.path for info in page]
    assert 0 < len(sent) <= 8 and sent == sorted(sent)


def test_the_limit_is_a_setting() -> None:
    from decode_userapi.config import Settings, SettingsError

    assert Settings.from_env({}, env_file=None).max_listing_entries == 1_000_000
    assert Settings.from_env({"MAX_LISTING_ENTRIES": "5"}, env_file=None).max_listing_entries == 5
    with pytest.raises(SettingsError, match="MAX_LISTING_ENTRIES"):
        Settings.from_env({"MAX_LISTING_ENTRIES": "0"}, env_file=None)
