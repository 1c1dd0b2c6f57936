"""File use cases over one user's tree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from operator import attrgetter

import structlog

from decode_userapi.domain.errors import Conflict, InvalidRequest, NotAllowed, NotFound, PayloadTooLarge
from decode_userapi.domain.files import (
    INPUT_FOLDERS,
    ROOT_FOLDERS,
    FileHTTPRequest,
    FileInfo,
    UserPath,
)
from decode_userapi.domain.identity import Principal
from decode_userapi.ports.storage import FileStorage
from decode_userapi.services.zipstream import zip_stream

log = structlog.get_logger(__name__)
_by_path = attrgetter("path")


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
        raise InvalidRequest(f"files can only be uploaded into {', '.join(INPUT_FOLDERS)}")


class FileService:
    def __init__(self, storage: FileStorage, quota_bytes: int = 0) -> None:
        self._storage = storage
        self._quota = quota_bytes  # per user; 0: none

    async def _ensure_tree(self, user: str) -> None:
        for folder in ROOT_FOLDERS:
            await self._storage.mkdir(user, UserPath((folder,), True))

    async def list(
        self, principal: Principal, path: UserPath, *, show_dirs: bool = True, recursive: bool = False
    ) -> list[FileInfo]:
        user = principal.user_id
        if path.is_root or path.is_predefined_folder:
            await self._ensure_tree(user)
        entries = await self._storage.list(user, path.as_dir(), recursive=recursive)
        infos = [e.info() for e in entries if show_dirs or not e.is_dir]
        # Clients get the order of the path strings (a folder's "/" sorts after "-" or "."). Storage
        # adapters list in the order of the parts, nearly the same: this sort costs little.
        infos.sort(key=_by_path)
        return infos

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
        if path.is_root or path.top not in ROOT_FOLDERS:
            raise NotAllowed(f"folders can only be created inside {', '.join(ROOT_FOLDERS)}")
        await self._storage.mkdir(principal.user_id, path.as_dir())

    async def rename(self, principal: Principal, source: UserPath, target: UserPath) -> FileInfo:
        user = principal.user_id
        if source.is_root or source.is_predefined_folder:
            raise NotAllowed("the predefined folders cannot be renamed")
        entry = await self._storage.stat(user, source)
        if entry is None:
            raise NotFound(f"{source} not found")
        if entry.is_dir and await self._storage.list(user, source.as_dir(), recursive=False):
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
                path.name, self._storage.read(user, entry.path), entry.size, "application/octet-stream"
            )
        folder = entry.path.as_dir()
        files = [e for e in await self._storage.list(user, folder, recursive=True) if not e.is_dir]
        files.sort(key=lambda e: e.path.parts)
        members = [
            ("/".join(e.path.relative_to(folder)), self._reader(user, e.path)) for e in files
        ]
        name = f"{folder.name or 'files'}.zip"
        return Download(name, zip_stream(members), None, "application/zip")

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
