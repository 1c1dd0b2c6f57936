"""FileStorage on a local directory: each user's tree is `<root>/<user>/`.

Every path is opened one component at a time from the root with `O_NOFOLLOW`, relative to the
previous directory's descriptor, so a symbolic link anywhere in a user's tree (planted by a job,
say) is never followed, not even by a link swapped in between a check and its use. Listings skip
links, deleting a link removes only the link. Blocking calls run in worker threads.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO, TypeVar

import anyio.to_thread

from decode_userapi.domain.errors import Conflict, DomainError, NotFound, StorageFull, StorageUnavailable
from decode_userapi.domain.files import Entry, FileHTTPRequest, UserPath, check_username

T = TypeVar("T")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO can't hang us
_TEMP_PREFIX, _TEMP_SUFFIX = ".upload-", ".part"
_by_name = attrgetter("name")
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})  # disk or quota full: 507, not "unavailable"


def _is_temp(name: str) -> bool:
    return name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)


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
    def __init__(self, root: str | Path, chunk_size: int = 1 << 20, write_batch: int = 1 << 20) -> None:
        self.root = Path(root).resolve()
        self._chunk_size = chunk_size  # bytes per read: each is one thread hop, and one send
        self._write_batch = write_batch  # bytes gathered before a write: each is one thread hop

    async def start(self) -> None:
        await anyio.to_thread.run_sync(partial(self.root.mkdir, parents=True, exist_ok=True))

    async def aclose(self) -> None:
        pass

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

    async def list(self, user: str, path: UserPath, *, recursive: bool) -> list[Entry]:
        return await _off_loop(path, self._list, self._names(user, path), path.as_dir(), recursive)

    def _list(self, names: tuple[str, ...], path: UserPath, recursive: bool) -> list[Entry]:
        try:
            fd = self._open_dir(names)
        except OSError as e:
            if _is_missing(e):
                raise NotFound(f"{path} is not a folder") from e
            raise
        entries: list[Entry] = []
        try:
            self._scan(fd, path.parts, recursive, entries)
        finally:
            os.close(fd)
        return entries

    def _scan(self, fd: int, base: tuple[str, ...], recursive: bool, out: list[Entry]) -> None:
        """Append the entries below the folder `fd` to `out`, sorted by their parts.

        Each folder's names are sorted and a folder's contents follow it, so the whole list comes out
        in the order of its parts without a sort over the (much larger) tuple keys. Names found here
        are used as they are: they need no parsing, and listing names jobs wrote must not fail.
        """
        with os.scandir(fd) as it:
            found = sorted((e for e in it if not _is_temp(e.name)), key=_by_name)
        for item in found:
            parts = (*base, item.name)
            # Files first, the most common; links, FIFOs and the like are neither.
            if item.is_file(follow_symlinks=False):
                out.append(Entry(UserPath(parts), item.stat(follow_symlinks=False).st_size))
            elif item.is_dir(follow_symlinks=False):
                out.append(Entry(UserPath(parts, True), None))
                if recursive:
                    child = os.open(item.name, _DIR_FLAGS, dir_fd=fd)
                    try:
                        self._scan(child, parts, True, out)
                    finally:
                        os.close(child)

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
                size = await self._copy(path, chunks, file)
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
        batch: list[bytes] = []
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
