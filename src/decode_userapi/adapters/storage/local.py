"""FileStorage on a local directory: each user's tree is `<root>/<user>/`.

Every path is opened one component at a time from the root with `O_NOFOLLOW`, relative to the
previous directory's descriptor, so a symbolic link anywhere in a user's tree (planted by a job,
say) is never followed, not even by a link swapped in between a check and its use. Listings skip
links, deleting a link removes only the link. Blocking calls run in worker threads.
"""

from __future__ import annotations

import builtins
import errno
import os
import secrets
import shutil
import stat
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar

import anyio.to_thread
import structlog

from decode_userapi.adapters.storage.janitor import Janitor
from decode_userapi.domain.errors import Conflict, DomainError, NotFound, StorageFull, StorageUnavailable
from decode_userapi.domain.files import MAX_DEPTH, Entry, FileHTTPRequest, UserPath, check_username

T = TypeVar("T")
log = structlog.get_logger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO can't hang us
_TEMP_PREFIX, _TEMP_SUFFIX = ".upload-", ".part"
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})  # disk or quota full: 507, not "unavailable"


def _is_temp(name: str) -> bool:
    """An upload's temporary file (`write`): never listed; removed once stale (`remove_leftovers`)."""
    return name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)


def _sorted_keys(fd: int) -> list[str]:
    """The names of the folder's files and folders, folders with a ``/`` after them, sorted."""
    keys = _keys(fd)
    keys.sort()
    return keys


def _keys(fd: int) -> list[str]:
    keys: builtins.list[str] = []
    with os.scandir(fd) as it:
        for item in it:
            name = item.name
            if _is_temp(name):
                continue
            try:
                # Files first, the most common; links, FIFOs and the like are neither.
                if item.is_file(follow_symlinks=False):
                    keys.append(name)
                elif item.is_dir(follow_symlinks=False):
                    keys.append(f"{name}/")
            except OSError:
                continue  # gone since the folder was read
    return keys


def _open_child(fd: int, name: str) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as e:
        if _is_missing(e):
            return None  # removed, or swapped for a link or a file, since the folder was read
        raise


def _file_size(fd: int, name: str) -> int | None:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError as e:
        if _is_missing(e):
            return None
        raise
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _is_missing(e: OSError) -> bool:
    """Nothing usable there: absent, a file where a folder is needed, or a symbolic link."""
    return isinstance(e, (FileNotFoundError, NotADirectoryError)) or e.errno == errno.ELOOP


def _translate(e: OSError, path: UserPath) -> DomainError:
    if _is_missing(e):
        return NotFound(f"{path} not found")
    if isinstance(e, (FileExistsError, IsADirectoryError)):
        return Conflict(f"{path} collides with an existing file or folder")
    if e.errno in _FULL:
        return StorageFull(f"no space left in file storage for {path}; nothing of it was kept")
    return StorageUnavailable(f"file storage failed on {path}: {e.strerror or e}")


async def _off_loop(path: UserPath, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a blocking call in a thread (not abandoned on cancellation), translating OS errors."""
    try:
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
    except OSError as e:
        raise _translate(e, path) from e


def _entry(path: UserPath, st: os.stat_result) -> Entry | None:
    if stat.S_ISDIR(st.st_mode):
        return Entry(path.as_dir(), None)
    if stat.S_ISREG(st.st_mode):
        return Entry(path.as_file(), st.st_size)
    return None  # links, FIFOs, sockets, devices are not part of a user's tree


class LocalFileStorage:
    def __init__(
        self,
        root: str | Path,
        chunk_size: int = 1 << 20,
        write_batch: int = 1 << 20,
        page_size: int = 1000,
        leftover_age: float = 3600.0,
        cleanup_interval: float | None = 3600.0,
    ) -> None:
        """`page_size`: entries per page of a walk (each page is one thread hop); temporary files of
        uploads unchanged for `leftover_age` seconds are removed at `start()` and then every
        `cleanup_interval` seconds (None: only when `remove_leftovers` is called)."""
        self.root = Path(root).resolve()
        self._chunk_size = chunk_size  # bytes per read: each is one thread hop, and one send
        self._write_batch = write_batch  # bytes gathered before a write: each is one thread hop
        self.page_size = page_size
        self._cleanup = Janitor("local", self.remove_leftovers, leftover_age, cleanup_interval)
        self._closing = threading.Event()  # stops a clean-up's walk of a large tree at shutdown

    async def start(self) -> None:
        await anyio.to_thread.run_sync(partial(self.root.mkdir, parents=True, exist_ok=True))
        self._closing.clear()
        self._cleanup.start()

    async def aclose(self) -> None:
        self._closing.set()
        await self._cleanup.aclose()

    async def remove_leftovers(self, before: datetime) -> int:
        """Remove upload temporary files last written before `before`, in every user's tree.

        A write in progress keeps writing its file (at least every `write_batch` bytes): only one
        idle for longer than the age the caller chose is taken, and that write then fails."""
        return await anyio.to_thread.run_sync(self._remove_leftovers, before.timestamp())

    def _remove_leftovers(self, cutoff: float) -> int:
        removed = 0
        if not self.root.is_dir():
            return 0
        # fwalk opens each folder relative to its parent and never follows links.
        for _, _, files, dir_fd in os.fwalk(self.root, follow_symlinks=False):
            if self._closing.is_set():
                break
            for name in files:
                if not _is_temp(name):
                    continue
                with suppress(OSError):  # gone already, or not ours to remove
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                        os.unlink(name, dir_fd=dir_fd)
                        removed += 1
        if removed:
            log.info("storage.leftovers_removed", storage="local", temporary_files=removed)
        return removed

    # -- walking ---------------------------------------------------------------------------------

    @staticmethod
    def _names(user: str, path: UserPath) -> tuple[str, ...]:
        """The components below the root: the user's folder, then the path's segments."""
        return (check_username(user), *path.parts)

    def _open_dir(self, names: tuple[str, ...], *, create: bool = False) -> int:
        """A descriptor of `<root>/<names...>`, opened one component at a time without following links.

        The root and the user's folder are created if missing, the rest only when `create`. A file or
        a link on the way raises `NotADirectoryError`, or `Conflict` when `create`.
        """
        try:
            fd = os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root, _DIR_FLAGS)
        try:
            for depth, name in enumerate(names):
                if create or depth == 0:
                    with suppress(FileExistsError):
                        os.mkdir(name, dir_fd=fd)
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except NotADirectoryError as e:
                    if create:
                        raise Conflict(f"{'/'.join(names[1 : depth + 1])} is not a folder") from e
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextmanager
    def _dir(self, names: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
        fd = self._open_dir(names, create=create)
        try:
            yield fd
        finally:
            os.close(fd)

    def _lstat(self, names: tuple[str, ...]) -> os.stat_result | None:
        try:
            with self._dir(names[:-1]) as parent:
                return os.stat(names[-1], dir_fd=parent, follow_symlinks=False)
        except OSError as e:
            if _is_missing(e):
                return None
            raise

    # -- queries ---------------------------------------------------------------------------------

    async def stat(self, user: str, path: UserPath) -> Entry | None:
        if path.is_root:
            return Entry(path, None)  # a user's root always exists (it is created on first use)
        st = await _off_loop(path, self._lstat, self._names(user, path))
        return None if st is None else _entry(path, st)

    async def list(self, user: str, path: UserPath, *, recursive: bool) -> builtins.list[Entry]:
        return [entry async for page in self.walk(user, path, recursive=recursive) for entry in page]

    async def walk(self, user: str, path: UserPath, *, recursive: bool) -> AsyncGenerator[builtins.list[Entry], None]:
        pages = self._pages(self._names(user, path), path.as_dir(), recursive)
        try:
            done = False
            while not done:
                page, done = await _off_loop(path, next, pages)  # one thread hop a page
                if page:
                    yield page
        finally:
            pages.close()  # closes the folders the walk holds open (it is not running: see _off_loop)

    async def count(self, user: str, path: UserPath, *, recursive: bool, limit: int) -> int:
        return await _off_loop(path, self._count, self._names(user, path), path.as_dir(), recursive, limit)

    def _count(self, names: tuple[str, ...], path: UserPath, recursive: bool, limit: int) -> int:
        """The names `_pages` would list, counted (depth first, one descriptor per level, as it):
        no stat of each file, no sorting, no entries: about a third of a walk's time."""
        stack: builtins.list[tuple[int, Iterator[str]]] = []
        count = 0

        def enter(fd: int) -> None:
            nonlocal count
            stack.append((fd, iter(())))  # on the stack first: closed if reading it fails
            keys = _keys(fd)
            count += len(keys)
            stack[-1] = (fd, iter([key[:-1] for key in keys if key[-1] == "/"] if recursive else []))

        try:
            try:
                enter(self._open_dir(names))
            except OSError as e:
                if _is_missing(e):
                    raise NotFound(f"{path} is not a folder") from e
                raise
            while stack and count <= limit:
                fd, folders = stack[-1]
                name = next(folders, None)
                if name is None:
                    stack.pop()
                    os.close(fd)
                elif len(path.parts) + len(stack) < MAX_DEPTH and (child := _open_child(fd, name)) is not None:
                    enter(child)
        finally:
            for fd, _ in stack:
                os.close(fd)
        return count

    def _pages(
        self, names: tuple[str, ...], path: UserPath, recursive: bool
    ) -> Generator[tuple[builtins.list[Entry], bool], None, None]:
        """The entries below the folder, depth first, in pages of `page_size`, in the order of the
        paths' strings; each with whether it is the last (so a small folder costs one thread hop).

        Each folder's names are sorted with a ``/`` after each folder's name, and a folder's contents
        follow it: since no name holds a ``/``, everything below ``a/`` sorts right after it and
        before any name that sorts after ``a/``, so the whole walk comes out in the order of the
        strings (``a b``, ``a-b``, ``a.txt``, ``a/``, ``a/x``, ``a0``) with no sort over the tree.
        It holds one open descriptor and one sorted list of names per folder on the way down, and
        goes no deeper than `MAX_DEPTH` (a folder a job nested deeper is listed, not what it holds:
        no client could name it, and each level would hold a descriptor).
        Names found here are used as they are: they need no parsing, and listing names jobs wrote
        must not fail. Something removed or swapped for a link while the walk runs is left out.
        """
        stack: builtins.list[tuple[int, tuple[str, ...], Iterator[str]]] = []
        try:
            try:
                fd = self._open_dir(names)
            except OSError as e:
                if _is_missing(e):
                    raise NotFound(f"{path} is not a folder") from e
                raise
            stack.append((fd, path.parts, iter(())))  # on the stack first: closed if reading it fails
            stack[-1] = (fd, path.parts, iter(_sorted_keys(fd)))
            page: builtins.list[Entry] = []
            while stack:
                fd, base, keys = stack[-1]
                descended = False
                for key in keys:
                    if key[-1] == "/":
                        parts = (*base, key[:-1])
                        page.append(Entry(UserPath(parts, True), None))
                        if recursive and len(parts) < MAX_DEPTH and (child := _open_child(fd, key[:-1])) is not None:
                            stack.append((child, parts, iter(())))
                            stack[-1] = (child, parts, iter(_sorted_keys(child)))
                            descended = True
                    else:
                        size = _file_size(fd, key)
                        if size is not None:
                            page.append(Entry(UserPath((*base, key)), size))
                    if len(page) >= self.page_size:
                        yield page, False
                        page = []
                    if descended:
                        break
                else:
                    stack.pop()
                    os.close(fd)
            yield page, True
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def storage_uri(self, user: str, path: UserPath) -> str:
        uri = str(self.root.joinpath(*self._names(user, path)))
        return f"{uri}/" if path.is_dir else uri

    async def upload_request(self, user: str, folder: UserPath) -> FileHTTPRequest | None:
        return None

    async def download_request(self, user: str, path: UserPath) -> FileHTTPRequest | None:
        return None

    # -- bytes -----------------------------------------------------------------------------------

    async def write(self, user: str, path: UserPath, chunks: AsyncIterator[bytes]) -> Entry:
        if path.is_root:
            raise Conflict("the root is a folder")
        names = self._names(user, path)
        parent = await _off_loop(path, self._open_dir, names[:-1], create=True)
        temp = f"{_TEMP_PREFIX}{secrets.token_hex(8)}{_TEMP_SUFFIX}"
        try:
            opener = partial(os.open, mode=0o666, dir_fd=parent)
            file = await _off_loop(path, open, temp, "xb", opener=opener)
            try:
                size = await self._copy(path, chunks, file)  # type: ignore[arg-type]  # binary: mode xb
                await _off_loop(path, file.close)
                await _off_loop(path, os.replace, temp, names[-1], src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:  # cancellation too: clean up synchronously, then re-raise
                with suppress(OSError):
                    file.close()
                with suppress(OSError):
                    os.unlink(temp, dir_fd=parent)
                raise
        finally:
            os.close(parent)
        return Entry(path.as_file(), size)

    async def _copy(self, path: UserPath, chunks: AsyncIterator[bytes], file: BinaryIO) -> int:
        """Write the chunks to `file`, gathered into batches of about `write_batch` bytes.

        A request body arrives in pieces of some 64 KiB; a thread hop for each would cost more CPU
        than the writing itself. Chunks that are `bytes` are kept as they are (they cannot change);
        anything else is copied, since its producer may reuse the buffer once we ask for the next.
        """
        batch: builtins.list[bytes] = []
        pending = size = 0
        async for chunk in chunks:
            batch.append(chunk if type(chunk) is bytes else bytes(chunk))
            pending += len(chunk)
            if pending >= self._write_batch:
                await _off_loop(path, file.writelines, batch)
                size += pending
                batch, pending = [], 0
        if batch:
            await _off_loop(path, file.writelines, batch)
        return size + pending

    async def read(self, user: str, path: UserPath) -> AsyncIterator[bytes]:
        fd = await _off_loop(path, self._open_file, self._names(user, path), path)
        try:
            while chunk := await _off_loop(path, os.read, fd, self._chunk_size):
                yield chunk
        finally:
            os.close(fd)

    def _open_file(self, names: tuple[str, ...], path: UserPath) -> int:
        with self._dir(names[:-1]) as parent:
            fd = os.open(names[-1], _FILE_FLAGS, dir_fd=parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotFound(f"{path} is not a file")
        return fd

    # -- changes ---------------------------------------------------------------------------------

    async def mkdir(self, user: str, path: UserPath) -> None:
        await _off_loop(path, lambda: os.close(self._open_dir(self._names(user, path), create=True)))

    async def rename(self, user: str, source: UserPath, target: UserPath) -> Entry:
        if target.is_within(source.as_dir()):
            raise Conflict(f"{source} cannot be moved into itself")
        return await _off_loop(source, self._rename, user, source, target)

    def _rename(self, user: str, source: UserPath, target: UserPath) -> Entry:
        src, dst = self._names(user, source), self._names(user, target)
        st = self._lstat(src)
        entry = None if st is None else _entry(target, st)
        if entry is None:
            raise NotFound(f"{source} not found")
        with self._dir(src[:-1]) as src_dir, self._dir(dst[:-1], create=True) as dst_dir:
            if self._lstat(dst) is not None:
                raise Conflict(f"{target} exists already")
            os.rename(src[-1], dst[-1], src_dir_fd=src_dir, dst_dir_fd=dst_dir)
        return entry

    async def delete(self, user: str, path: UserPath) -> None:
        await _off_loop(path, self._delete, self._names(user, path))

    def _delete(self, names: tuple[str, ...]) -> None:
        try:
            with self._dir(names[:-1]) as parent:
                if stat.S_ISDIR(os.stat(names[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                    shutil.rmtree(names[-1], dir_fd=parent)  # never follows links, even swapped-in ones
                else:
                    os.unlink(names[-1], dir_fd=parent)  # a file, or a link (never its target)
        except OSError as e:
            if not _is_missing(e):
                raise
