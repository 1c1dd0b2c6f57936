"""An in-memory FileStorage: one dict of files and one set of folders per user.

The folder set always holds every ancestor of every file and folder, so folders implied by files
and folders created explicitly behave alike. A user's root always exists.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from datetime import datetime

from decode_userapi.domain.errors import Conflict, NotFound
from decode_userapi.domain.files import Entry, FileHTTPRequest, UserPath, check_username

Parts = tuple[str, ...]


class _Tree:
    __slots__ = ("dirs", "files")

    def __init__(self) -> None:
        self.files: dict[Parts, bytes] = {}
        self.dirs: set[Parts] = {()}

    def entry(self, parts: Parts) -> Entry | None:
        if parts in self.files:
            return Entry(UserPath(parts), len(self.files[parts]))
        if parts in self.dirs:
            return Entry(UserPath(parts, True), None)
        return None

    def make_dirs(self, parts: Parts) -> None:
        """Add `parts` and its ancestors as folders; `Conflict` if a file is in the way."""
        prefixes = [parts[:depth] for depth in range(1, len(parts) + 1)]
        for prefix in prefixes:
            if prefix in self.files:
                raise Conflict(f"{UserPath(prefix)} is a file, not a folder")
        self.dirs.update(prefixes)

    def subtree(self, parts: Parts) -> tuple[builtins.list[Parts], builtins.list[Parts]]:
        """Files and folders at `parts` or below it."""

        def under(keys: Iterable[Parts]) -> builtins.list[Parts]:
            return [k for k in keys if k[: len(parts)] == parts]

        return under(self.files), under(self.dirs)


class InMemoryFileStorage:
    def __init__(self, chunk_size: int = 1 << 20, page_size: int = 1000) -> None:
        self._trees: dict[str, _Tree] = {}
        self._chunk_size = chunk_size
        self.page_size = page_size

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def _tree(self, user: str) -> _Tree:
        return self._trees.setdefault(check_username(user), _Tree())

    async def stat(self, user: str, path: UserPath) -> Entry | None:
        return self._tree(user).entry(path.parts)

    async def list(self, user: str, path: UserPath, *, recursive: bool) -> builtins.list[Entry]:
        return [entry async for page in self.walk(user, path, recursive=recursive) for entry in page]

    async def walk(self, user: str, path: UserPath, *, recursive: bool) -> AsyncGenerator[builtins.list[Entry], None]:
        tree = self._tree(user)
        if path.parts not in tree.dirs:
            raise NotFound(f"{path.as_dir()} is not a folder")
        files, dirs = tree.subtree(path.parts)
        depth = len(path.parts)
        keys = [k for k in (*files, *dirs) if len(k) > depth and (recursive or len(k) == depth + 1)]
        entries = sorted((tree.entry(k) for k in keys), key=lambda e: str(e.path))  # type: ignore[union-attr]
        for start in range(0, len(entries), self.page_size):
            yield entries[start : start + self.page_size]  # type: ignore[misc]

    async def count(self, user: str, path: UserPath, *, recursive: bool, limit: int) -> int:
        return sum([len(page) async for page in self.walk(user, path, recursive=recursive)])

    async def remove_leftovers(self, before: datetime) -> int:
        return 0  # writes here are all or nothing

    async def mkdir(self, user: str, path: UserPath) -> None:
        self._tree(user).make_dirs(path.parts)

    async def write(self, user: str, path: UserPath, chunks: AsyncIterator[bytes]) -> Entry:
        data = b"".join([chunk async for chunk in chunks])  # all or nothing
        tree = self._tree(user)
        if path.parts in tree.dirs:
            raise Conflict(f"{path.as_dir()} is a folder")
        tree.make_dirs(path.parts[:-1])
        tree.files[path.parts] = data
        return Entry(path.as_file(), len(data))

    async def read(self, user: str, path: UserPath) -> AsyncIterator[bytes]:
        data = self._tree(user).files.get(path.parts)
        if data is None:
            raise NotFound(f"{path} is not a file")
        for start in range(0, len(data), self._chunk_size):
            yield data[start : start + self._chunk_size]

    async def rename(self, user: str, source: UserPath, target: UserPath) -> Entry:
        tree = self._tree(user)
        src, dst = source.parts, target.parts
        if target.is_within(source.as_dir()):
            raise Conflict(f"{source} cannot be moved into itself")
        if tree.entry(src) is None:
            raise NotFound(f"{source} not found")
        if tree.entry(dst) is not None:
            raise Conflict(f"{target} exists already")
        tree.make_dirs(dst[:-1])
        files, dirs = tree.subtree(src)
        for key in files:
            tree.files[dst + key[len(src) :]] = tree.files.pop(key)
        tree.dirs.difference_update(dirs)
        tree.dirs.update(dst + key[len(src) :] for key in dirs)
        return tree.entry(dst)  # type: ignore[return-value]

    async def delete(self, user: str, path: UserPath) -> None:
        tree = self._tree(user)
        files, dirs = tree.subtree(path.parts)
        for key in files:
            del tree.files[key]
        tree.dirs.difference_update(dirs)
        tree.dirs.add(())  # the root stays

    def storage_uri(self, user: str, path: UserPath) -> str:
        return f"memory://{check_username(user)}/{path}"

    async def upload_request(self, user: str, folder: UserPath) -> FileHTTPRequest | None:
        return None

    async def download_request(self, user: str, path: UserPath) -> FileHTTPRequest | None:
        return None
