"""File use cases over one user's tree."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import aclosing

import structlog

from decode_userapi.domain.errors import Conflict, InvalidRequest, NotAllowed, NotFound, PayloadTooLarge
from decode_userapi.domain.files import (
    INPUT_FOLDERS,
    ROOT_FOLDERS,
    Entry,
    FileHTTPRequest,
    FileInfo,
    UserPath,
)
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.media_types import ZIP, MediaTypes
from decode_userapi.domain.text import replace_unsafe_text
from decode_userapi.ports.storage import FileStorage
from decode_userapi.services.zipstream import zip_stream

log = structlog.get_logger(__name__)


class Download:
    """A file or a zipped folder, ready to stream."""

    __slots__ = ("chunks", "filename", "media_type", "size")

    def __init__(self, filename: str, chunks: AsyncIterator[bytes], size: int | None, media_type: str):
        self.filename = filename
        self.chunks = chunks
        self.size = size
        self.media_type = media_type


def _check_input_folder(folder: UserPath) -> None:
    if folder.top not in INPUT_FOLDERS:
        raise InvalidRequest(f"files are uploaded and folders created only inside {', '.join(INPUT_FOLDERS)}")


DEFAULT_MAX_LISTING_ENTRIES = 1_000_000
PREFETCH_ENTRIES = 10_000  # a listing up to this size is read whole before its answer starts


class FileService:
    def __init__(
        self,
        storage: FileStorage,
        quota_bytes: int = 0,
        max_listing_entries: int = DEFAULT_MAX_LISTING_ENTRIES,
        prefetch_entries: int = PREFETCH_ENTRIES,
    ) -> None:
        self._storage = storage
        self._quota = quota_bytes  # per user; 0: none
        self._media_types = MediaTypes()
        self._max_entries = max_listing_entries
        self._prefetch_entries = prefetch_entries

    async def _ensure_tree(self, user: str) -> None:
        for folder in ROOT_FOLDERS:
            await self._storage.mkdir(user, UserPath((folder,), True))

    async def list(
        self, principal: Principal, path: UserPath, *, show_dirs: bool = True, recursive: bool = False
    ) -> builtins.list[FileInfo]:
        """The folder's entries (all depths when `recursive`), sorted by path; `listing`, whole."""
        listing = await self.listing(principal, path, show_dirs=show_dirs, recursive=recursive)
        if isinstance(listing, list):
            return listing
        return [info async for page in listing for info in page]

    async def listing(
        self, principal: Principal, path: UserPath, *, show_dirs: bool = True, recursive: bool = False
    ) -> builtins.list[FileInfo] | AsyncGenerator[builtins.list[FileInfo], None]:
        """The folder's entries sorted by path: all of them when there are up to `prefetch_entries`,
        else pages to send as the storage walks the tree.

        Everything that can refuse the listing is checked before this returns: the folder exists
        (`NotFound`), and the walk stays within `max_listing_entries` files and folders
        (`PayloadTooLarge`). A tree larger than `prefetch_entries` is counted first
        (`FileStorage.count`), then walked on as the pages are sent, so memory stays flat. Should it
        grow past the limit meanwhile, the pages stop with `PayloadTooLarge`.
        """
        user = principal.user_id
        if path.is_root or path.is_predefined_folder:
            await self._ensure_tree(user)
        folder = path.as_dir()
        pages = self._storage.walk(user, folder, recursive=recursive)
        try:
            head, complete = await self._prefetch(pages, folder)
            if not complete:
                await self._count(user, folder, recursive)
        except BaseException:
            await pages.aclose()
            raise
        if complete:
            return [e.info() for page in head for e in page if show_dirs or not e.is_dir]
        return self._infos(head, pages, folder, show_dirs)

    def _too_many(self, folder: UserPath) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"{str(folder) or '/'} holds more than {self._max_entries:,} files and folders, the most one "
            "listing or download may cover: list or download its subfolders one by one"
        )

    async def _prefetch(
        self, pages: AsyncGenerator[builtins.list[Entry], None], folder: UserPath
    ) -> tuple[builtins.list[builtins.list[Entry]], bool]:
        """The first pages, up to `prefetch_entries` entries, and whether they are all there are."""
        head: builtins.list[builtins.list[Entry]] = []
        count = 0
        async for page in pages:
            head.append(page)
            count += len(page)
            if count > self._max_entries:
                raise self._too_many(folder)
            if count >= self._prefetch_entries:
                return head, False
        return head, True

    async def _count(self, user: str, folder: UserPath, recursive: bool) -> int:
        count = await self._storage.count(user, folder, recursive=recursive, limit=self._max_entries)
        if count > self._max_entries:
            raise self._too_many(folder)
        return count

    async def _infos(
        self,
        head: builtins.list[builtins.list[Entry]],
        rest: AsyncGenerator[builtins.list[Entry], None],
        folder: UserPath,
        show_dirs: bool,
    ) -> AsyncGenerator[builtins.list[FileInfo], None]:
        count = 0
        try:
            for page in head:
                count += len(page)
                yield [e.info() for e in page if show_dirs or not e.is_dir]
            del head[:]  # sent: not kept for the rest of the walk
            async for page in rest:
                count += len(page)
                if count > self._max_entries:  # the tree grew since it was counted
                    log.warning("file.listing_cut", folder=str(folder), entries=count)
                    raise self._too_many(folder)
                yield [e.info() for e in page if show_dirs or not e.is_dir]
        finally:
            await rest.aclose()

    async def upload(
        self, principal: Principal, folder: UserPath, filename: str, chunks: AsyncIterator[bytes]
    ) -> FileInfo:
        _check_input_folder(folder)
        target = folder.as_dir().child(filename)
        existing = await self._storage.stat(principal.user_id, target.as_dir())
        if existing is not None and existing.is_dir:
            raise Conflict(f"{target} is a folder")
        if self._quota:
            chunks = await self._within_quota(principal.user_id, target, chunks)
        entry = await self._storage.write(principal.user_id, target, chunks)
        log.info("file.uploaded", user_id=principal.user_id, path=str(target), size=entry.size)
        return entry.info()

    async def upload_all(
        self, principal: Principal, folder: UserPath, files: AsyncIterable[tuple[str, AsyncIterator[bytes]]]
    ) -> builtins.list[FileInfo]:
        """Store each (filename, chunks) in turn, as `upload` does; all or none: when one fails, the
        files this call already stored are deleted again (a file one of them had replaced is not
        brought back). A name given twice is refused (409) rather than one file silently replacing
        the other (a folder upload whose subfolders hold files of the same name)."""
        stored: builtins.list[FileInfo] = []
        names: set[str] = set()
        try:
            async for filename, chunks in files:
                if filename in names:
                    raise Conflict(f"{filename!r} appears more than once in this upload")
                names.add(filename)
                stored.append(await self.upload(principal, folder, filename, chunks))
        except BaseException:
            for info in stored:
                await self._storage.delete(principal.user_id, UserPath.parse(info.path))
            if stored:
                log.info("file.upload_rolled_back", user_id=principal.user_id, files=len(stored))
            raise
        return stored

    async def _within_quota(
        self, user: str, target: UserPath, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """The chunks, refused (413) as soon as they would take the user's tree over the quota.

        A replaced file's old size is not counted. Uploads sent at the same moment are each checked
        against the usage before them, so together they may pass the quota by their own sizes.
        """
        entries = await self._storage.list(user, UserPath.root(), recursive=True)
        used = sum(e.size or 0 for e in entries if e.path.parts != target.parts)
        room = self._quota - used

        async def counted() -> AsyncIterator[bytes]:
            written = 0
            async for chunk in chunks:
                written += len(chunk)
                if written > room:
                    raise PayloadTooLarge(
                        f"this upload would exceed your storage quota of {self._quota} bytes "
                        f"({max(used, 0)} bytes used)"
                    )
                yield chunk

        return counted()

    async def upload_request(
        self, principal: Principal, folder: UserPath, *, api_upload_url: str, authorization: str | None
    ) -> FileHTTPRequest:
        """How the client uploads into `folder`: a pre-signed request, or a POST to this API."""
        _check_input_folder(folder)
        direct = await self._storage.upload_request(principal.user_id, folder.as_dir())
        if direct is not None:
            return direct
        headers = {"authorization": authorization} if authorization else {}
        return FileHTTPRequest(method="post", url=api_upload_url, headers=headers)

    async def mkdir(self, principal: Principal, path: UserPath) -> None:
        """Create a folder where users may upload (the job folders `output/`, `log/` are the workers')."""
        _check_input_folder(path)
        await self._storage.mkdir(principal.user_id, path.as_dir())

    async def rename(self, principal: Principal, source: UserPath, target: UserPath) -> FileInfo:
        user = principal.user_id
        if source.is_root or source.is_predefined_folder:
            raise NotAllowed("the predefined folders cannot be renamed")
        entry = await self._storage.stat(user, source)
        if entry is None:
            raise NotFound(f"{source} not found")
        if entry.is_dir and await self._has_entries(user, source.as_dir()):
            raise NotAllowed("only empty folders can be renamed")
        if target.is_root or target.is_predefined_folder or target.top not in ROOT_FOLDERS:
            raise NotAllowed(f"the new path must be inside one of {', '.join(ROOT_FOLDERS)}")
        target = target.as_dir() if entry.is_dir else target.as_file()
        if source.parts == target.parts:
            return entry.info()
        if target.is_within(source.as_dir()):
            raise NotAllowed("a folder cannot be moved into itself")
        if await self._storage.stat(user, target) is not None:
            raise Conflict(f"{target} exists already")
        moved = await self._storage.rename(user, entry.path, target)
        log.info("file.renamed", user_id=user, source=str(source), target=str(target))
        return moved.info()

    async def _has_entries(self, user: str, folder: UserPath) -> bool:
        async with aclosing(self._storage.walk(user, folder, recursive=False)) as pages:
            async for page in pages:
                if page:
                    return True
        return False

    async def delete(self, principal: Principal, path: UserPath) -> None:
        user = principal.user_id
        await self._storage.delete(user, path)
        if path.is_root or path.is_predefined_folder:
            await self._ensure_tree(user)
        log.info("file.deleted", user_id=user, path=str(path))

    async def download(self, principal: Principal, path: UserPath) -> Download:
        user = principal.user_id
        entry = await self._storage.stat(user, path)
        if entry is None:
            raise NotFound(f"{path} not found")
        if not entry.is_dir:
            return Download(
                path.name, self._storage.read(user, entry.path), entry.size, self._media_types.of(path.name)
            )
        folder = entry.path.as_dir()
        files: builtins.list[Entry] = []
        count = 0
        async with aclosing(self._storage.walk(user, folder, recursive=True)) as pages:
            async for page in pages:
                count += len(page)  # folders too: they are walked as much as files
                if count > self._max_entries:
                    raise self._too_many(folder)
                files += [e for e in page if not e.is_dir]
        members = [
            # Names from disk that are not UTF-8 (written by a job) cannot be zip member names as
            # they are: their undecodable bytes become U+FFFD.
            (replace_unsafe_text("/".join(e.path.relative_to(folder))), self._reader(user, e.path))
            for e in files
        ]
        name = f"{folder.name or 'files'}.zip"
        return Download(name, zip_stream(members), None, ZIP)

    def _reader(self, user: str, path: UserPath):  # type: ignore[no-untyped-def]
        return lambda: self._storage.read(user, path)

    async def download_request(
        self, principal: Principal, path: UserPath, *, api_download_url: str, authorization: str | None
    ) -> FileHTTPRequest:
        user = principal.user_id
        entry = await self._storage.stat(user, path)
        if entry is None:
            raise NotFound(f"{path} not found")
        if not entry.is_dir:
            direct = await self._storage.download_request(user, entry.path)
            if direct is not None:
                return direct
        headers = {"authorization": authorization} if authorization else {}
        return FileHTTPRequest(method="get", url=api_download_url, headers=headers)
