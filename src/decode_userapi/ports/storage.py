from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Protocol

from decode_userapi.domain.files import Entry, FileHTTPRequest, UserPath


class FileStorage(Protocol):
    """Each user's private tree. Paths are always `UserPath`s relative to that user's root.

    Adapters raise `NotFound` for a missing path where one must exist, and translate their
    library's faults into `StorageUnavailable`.
    """

    async def stat(self, user: str, path: UserPath) -> Entry | None:
        """The file or directory at `path` (whatever `path.is_dir` says), or None."""
        ...

    async def list(self, user: str, path: UserPath, *, recursive: bool) -> builtins.list[Entry]:
        """Entries below the directory `path` (all depths when `recursive`); `NotFound` if no directory.

        In the order of their paths' strings (`str(entry.path)`, folders ending in ``/``), as `walk`."""
        ...

    def walk(self, user: str, path: UserPath, *, recursive: bool) -> AsyncGenerator[builtins.list[Entry], None]:
        """`list`'s entries in pages, as they are found, in the same order: the order of the paths'
        strings, so a folder's contents follow it and ``a b``, ``a-b``, ``a.txt`` come before ``a/``.

        Memory stays bounded by a page and the folders open along the way (a local folder's names are
        sorted as a whole), whatever the size of the tree. `NotFound` (raised on first iteration) if
        `path` is no directory. Closing the iterator early releases what the walk holds.
        """
        ...

    async def count(self, user: str, path: UserPath, *, recursive: bool, limit: int) -> int:
        """How many entries `walk` would yield, or a number above `limit` as soon as it is passed
        (cheaper than walking: no sizes, no entries). `NotFound` if `path` is no directory."""
        ...

    async def remove_leftovers(self, before: datetime) -> int:
        """Remove what interrupted uploads left behind and last changed before `before` (temporary
        files, pending multipart uploads); how many. Adapters also do this on their own, hourly."""
        ...

    async def mkdir(self, user: str, path: UserPath) -> None:
        """Create the directory and its parents; nothing if it exists."""
        ...

    async def write(self, user: str, path: UserPath, chunks: AsyncIterator[bytes]) -> Entry:
        """Store a file from a stream of chunks, creating parents; replaces an existing file.

        A failed or interrupted write leaves no partial file behind.
        """
        ...

    def read(self, user: str, path: UserPath) -> AsyncIterator[bytes]:
        """Stream a file's bytes. `NotFound` (raised on first iteration) if it is not a file."""
        ...

    async def rename(self, user: str, source: UserPath, target: UserPath) -> Entry:
        """Move a file or an empty directory; parents of the target are created."""
        ...

    async def delete(self, user: str, path: UserPath) -> None:
        """Delete a file, or a directory with everything in it; nothing if missing."""
        ...

    def storage_uri(self, user: str, path: UserPath) -> str:
        """Where the worker-facing API reads or writes this path itself."""
        ...

    async def upload_request(self, user: str, folder: UserPath) -> FileHTTPRequest | None:
        """A direct upload request into `folder`, or None to upload through this API."""
        ...

    async def download_request(self, user: str, path: UserPath) -> FileHTTPRequest | None:
        """A direct download request for a file, or None to download through this API."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
