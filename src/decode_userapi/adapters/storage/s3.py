"""FileStorage on an S3 bucket: each user's tree is the key prefix `<root>/<user>/`.

Files are objects under that prefix. Folders are zero-byte "folder marker" objects whose key ends
in ``/``; a folder exists if its marker exists or any key lies below it, so folders made by
`mkdir`, by uploads (pre-signed or not) and by workers writing keys directly all behave alike.
When a file or folder is deleted or moved away, a marker keeps its parent folder, as on disk.

Uploads stream: a body up to `part_size` is one `PutObject`; a longer one is a multipart upload of
`part_size` parts (the only buffering), aborted on any failure or cancellation, so a failed write
leaves neither an object nor a pending upload. Files are moved with a server-side copy and a
delete; files above the 5 GiB `CopyObject` limit are copied with a multipart `UploadPartCopy`.

Keys in the bucket that `UserPath` would refuse (written there by workers, say) are listed as they
are, as the local adapter lists odd names on disk. Segments no disk can hold, ``""`` (``a//b``),
``.`` and ``..``, are never listed (only the folders before them are), and never used in a key.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack, aclosing, contextmanager, suppress
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import aioboto3
import anyio
import structlog
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from decode_userapi.adapters.aws import s3_client_config
from decode_userapi.adapters.storage.janitor import Janitor
from decode_userapi.domain.errors import Conflict, InvalidPath, NotFound, StorageUnavailable
from decode_userapi.domain.files import MAX_DEPTH, Entry, FileHTTPRequest, UserPath, check_username
from decode_userapi.domain.media_types import MediaTypes, attachment

T = TypeVar("T")
log = structlog.get_logger(__name__)

MIN_PART_SIZE = 5 * 1024**2  # S3's smallest part (all parts but the last)
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10_000
MAX_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
MAX_KEY_BYTES = 1024
_READ_CHUNK = 1 << 20
_CONCURRENCY = 8  # requests in flight for fan-outs (below the client's pool of 10 connections)
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_DENIED_CODES = frozenset(
    {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)
_UNNAMEABLE = frozenset({"", ".", ".."})  # segments no path names (and no disk holds)


def _is_missing(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code", "") in _MISSING_CODES


def _names(relative: str) -> tuple[tuple[str, ...], bool]:
    """The segments of a key below a folder, and whether the last one is a folder.

    A segment that no path can name (``""``, ``.``, ``..``) ends it: what lies before it are folders.
    """
    is_dir = relative.endswith("/")
    names = (relative[:-1] if is_dir else relative).split("/")
    for depth, name in enumerate(names):
        if name in _UNNAMEABLE:
            return tuple(names[:depth]), True
    return tuple(names), is_dir


class S3FileStorage:
    # Objects larger than this are copied part by part (S3 refuses a single CopyObject above 5 GiB).
    copy_limit: int = 5 * 1024**3
    copy_part_size: int = 512 * 1024**2

    def __init__(
        self,
        bucket: str,
        root: str = "",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        addressing_style: str | None = None,
        presign_expiry: int = 3600,
        part_size: int = 8 * 1024 * 1024,
        list_page_size: int = 1000,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        max_upload_bytes: int | None = None,
        session: aioboto3.Session | None = None,
        leftover_age: float = 24 * 3600.0,
        cleanup_interval: float | None = 3600.0,
        cleanup_delay: float = 60.0,
    ) -> None:
        """`endpoint_url=None` lets the AWS SDK's own settings apply (`AWS_ENDPOINT_URL_S3`,
        `AWS_ENDPOINT_URL`, profiles); `max_attempts` counts the first try; `max_upload_bytes`
        caps pre-signed POST uploads (a `content-length-range` condition); `session` is an
        `aioboto3.Session` to use (a profile, say) instead of a default one. Multipart uploads begun
        under `root` more than `leftover_age` seconds ago are aborted `cleanup_delay` seconds after
        `start()` (not in the way of a start-up, nor of a short-lived command such as
        `decode-userapi s3 cleanup`, which does its own) and then every `cleanup_interval` seconds
        (None: only when `remove_leftovers` is called)."""
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        if not 1 <= list_page_size <= 1000:
            raise ValueError("list_page_size must be between 1 and 1000")
        if addressing_style not in (None, "auto", "path", "virtual"):
            raise ValueError("addressing_style must be auto, path or virtual")
        self.bucket = bucket
        self.root = root.strip("/")
        self.endpoint_url = endpoint_url
        self._region = region
        self._presign_expiry = presign_expiry
        self._media_types = MediaTypes()
        self._part_size = part_size
        self._page_size = list_page_size
        self._max_upload_bytes = max_upload_bytes
        self._config = s3_client_config(
            region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            addressing_style=addressing_style,
        )
        self._session = session or aioboto3.Session()
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._cleanup = Janitor("s3", self.remove_leftovers, leftover_age, cleanup_interval, cleanup_delay)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._stack is not None:
            return
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                self._session.client(
                    "s3", region_name=self._region, endpoint_url=self.endpoint_url, config=self._config
                )
            )
        except BotoCoreError as e:
            await stack.aclose()
            raise StorageUnavailable(f"cannot set up the S3 client: {e}") from e
        # botocore reads the paginator's model from disk at first use (a listdir and stats over
        # every AWS service it knows): do it now, off the event loop, rather than in a request.
        await asyncio.to_thread(self._client.get_paginator, "list_objects_v2")
        await asyncio.to_thread(self._client.get_paginator, "list_multipart_uploads")
        self._stack = stack
        self._cleanup.start()

    async def aclose(self) -> None:
        await self._cleanup.aclose()
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def remove_leftovers(self, before: datetime) -> int:
        """Abort the multipart uploads under `root` begun before `before`; how many.

        Our own writes abort theirs when they fail; this catches the ones a crash or a killed process
        left (they cost storage until aborted). The bucket's lifecycle rule
        `AbortIncompleteMultipartUpload` does the same on AWS, without this service."""
        root = UserPath.root()
        prefix = f"{self.root}/" if self.root else ""
        paginator = self._s3.get_paginator("list_multipart_uploads")
        stale: builtins.list[tuple[str, str]] = []
        with self._errors(root):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                stale += [
                    (upload["Key"], upload["UploadId"])
                    for upload in page.get("Uploads", [])
                    if upload["Initiated"] < before
                ]
        for key, upload_id in stale:
            await self._abort(key, upload_id)
        if stale:
            log.info("storage.leftovers_removed", storage="s3", bucket=self.bucket, multipart_uploads=len(stale))
        return len(stale)

    @property
    def _s3(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3FileStorage.start() has not been awaited")
        return self._client

    # -- keys --------------------------------------------------------------------------------------

    def _user_prefix(self, user: str) -> str:
        user = check_username(user)
        return f"{self.root}/{user}/" if self.root else f"{user}/"

    def _file_key(self, user: str, path: UserPath) -> str:
        return _checked(self._user_prefix(user) + _key(path), path)

    def _dir_prefix(self, user: str, path: UserPath) -> str:
        """The folder's prefix, which is also its marker's key (the user's prefix for the root)."""
        return _checked(self._user_prefix(user) + (f"{_key(path)}/" if path.parts else ""), path)

    def storage_uri(self, user: str, path: UserPath) -> str:
        key = self._dir_prefix(user, path) if path.is_dir else self._file_key(user, path)
        return f"s3://{self.bucket}/{key}"

    # -- errors ------------------------------------------------------------------------------------

    def _unavailable(self, e: Exception, path: UserPath) -> StorageUnavailable:
        if isinstance(e, ClientError):
            code = e.response.get("Error", {}).get("Code", "") or str(
                e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "unknown")
            )
            if code == "NoSuchBucket":
                return StorageUnavailable(f"the S3 bucket {self.bucket!r} does not exist")
            if code in _DENIED_CODES:
                return StorageUnavailable(f"access to the S3 bucket {self.bucket!r} was denied ({code})")
            return StorageUnavailable(f"S3 storage failed on {path} ({code})")
        if isinstance(e, NoCredentialsError):
            return StorageUnavailable("no AWS credentials were found for the S3 storage")
        return StorageUnavailable(f"S3 storage cannot be reached: {e}")

    @contextmanager
    def _errors(self, path: UserPath) -> Iterator[None]:
        """Translate botocore faults (service errors, connection failures, timeouts)."""
        try:
            yield
        except (ClientError, BotoCoreError) as e:
            raise self._unavailable(e, path) from e

    # -- small requests ----------------------------------------------------------------------------

    async def _head(self, key: str, path: UserPath) -> int | None:
        """The size of the object at `key`, or None."""
        try:
            response = await self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _is_missing(e):
                return None
            raise self._unavailable(e, path) from e
        except BotoCoreError as e:
            raise self._unavailable(e, path) from e
        return int(response["ContentLength"])

    async def _dir_exists(self, user: str, path: UserPath) -> bool:
        if path.is_root:
            return True
        with self._errors(path):
            response = await self._s3.list_objects_v2(
                Bucket=self.bucket, Prefix=self._dir_prefix(user, path), MaxKeys=1
            )
        return bool(response.get("KeyCount", len(response.get("Contents", []))))

    async def _put_marker(self, user: str, path: UserPath) -> None:
        if not path.is_root:
            with self._errors(path):
                await self._s3.put_object(Bucket=self.bucket, Key=self._dir_prefix(user, path), Body=b"")

    async def _refuse_files_along(self, user: str, parts: tuple[str, ...]) -> None:
        """`Conflict` if a file sits at any of the folders `parts[:1]`, `parts[:2]`, ... `parts`."""
        folders = [UserPath(parts[:depth]) for depth in range(1, len(parts) + 1)]
        sizes = await _concurrently(partial(self._head, self._file_key(user, p), p) for p in folders)
        for folder, size in zip(folders, sizes, strict=True):
            if size is not None:
                raise Conflict(f"{folder} is a file, not a folder")

    async def _keys_below(self, user: str, path: UserPath) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """Pages of objects at or below the folder's prefix, its own marker included."""
        paginator = self._s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self._dir_prefix(user, path),
            PaginationConfig={"PageSize": self._page_size},
        )
        with self._errors(path):
            async for page in pages:
                yield page.get("Contents", [])

    # -- queries -----------------------------------------------------------------------------------

    async def stat(self, user: str, path: UserPath) -> Entry | None:
        if path.is_root:
            return Entry(UserPath.root(), None)
        as_file, as_dir = path.as_file(), path.as_dir()

        async def file() -> Entry | None:
            size = await self._head(self._file_key(user, path), path)
            return None if size is None else Entry(as_file, size)

        async def folder() -> Entry | None:
            return Entry(as_dir, None) if await self._dir_exists(user, path) else None

        first, second = (folder, file) if path.is_dir else (file, folder)
        return await first() or await second()

    async def list(self, user: str, path: UserPath, *, recursive: bool) -> builtins.list[Entry]:
        return [entry async for page in self.walk(user, path, recursive=recursive) for entry in page]

    async def walk(self, user: str, path: UserPath, *, recursive: bool) -> AsyncGenerator[builtins.list[Entry], None]:
        """A page of entries per page of keys. S3 lists keys in the order of their UTF-8 bytes, which
        is the order of the paths' strings (a folder's key is its marker's, ending in ``/``), so
        entries come out in that order as they are found; folders that have no marker are reported
        just before the first key below them."""
        base = path.as_dir()
        pages = self._walk_all(user, base) if recursive else self._walk_level(user, base)
        found = False
        try:
            async for page in pages:
                if not found and page is None:
                    if not base.is_root:
                        raise NotFound(f"{base} is not a folder")
                    return
                found = True
                if page:
                    yield page
        finally:
            await pages.aclose()

    async def count(self, user: str, path: UserPath, *, recursive: bool, limit: int) -> int:
        # The same listing requests as a walk: S3 has no cheaper way to count keys.
        count = 0
        async with aclosing(self.walk(user, path, recursive=recursive)) as pages:
            async for page in pages:
                count += len(page)
                if count > limit:
                    break
        return count

    async def _walk_level(self, user: str, base: UserPath) -> AsyncGenerator[builtins.list[Entry] | None, None]:
        """Pages of the folder's own entries; None first if there is nothing at or below it."""
        prefix = self._dir_prefix(user, base)
        paginator = self._s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/", PaginationConfig={"PageSize": self._page_size}
        )
        first = True
        with self._errors(base):
            async for page in pages:
                if first and not page.get("CommonPrefixes") and not page.get("Contents"):
                    yield None
                    return
                first = False
                keyed: builtins.list[tuple[str, Entry]] = []
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(prefix) : -1]
                    if name not in _UNNAMEABLE:
                        keyed.append((f"{name}/", Entry(UserPath((*base.parts, name), True), None)))
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix) :]
                    if name not in _UNNAMEABLE:  # "" is the folder's own marker
                        keyed.append((name, Entry(UserPath((*base.parts, name)), int(obj["Size"]))))
                keyed.sort(key=_first)  # a page's folders and files come in two lists
                yield [entry for _, entry in keyed]

    async def _walk_all(self, user: str, base: UserPath) -> AsyncGenerator[builtins.list[Entry] | None, None]:
        """Pages of everything below the folder; None first if there is nothing at or below it."""
        prefix = self._dir_prefix(user, base)
        depth = len(base.parts)
        # The folders reported so far that hold the current key: a chain, one per level below `base`.
        # Keys come sorted, so once a key is outside a folder, no later key is inside it.
        open_dirs: builtins.list[tuple[str, ...]] = []
        first = True
        async for objects in self._keys_below(user, base):
            if first and not objects:
                yield None
                return
            first = False
            page: builtins.list[Entry] = []
            for obj in objects:
                names, is_dir = _names(obj["Key"][len(prefix) :])
                if not names:
                    continue  # the folder's own marker, or nothing a path can name
                parts = (*base.parts, *names)
                if len(parts) > MAX_DEPTH:  # as on disk: deeper than any path names, not listed
                    parts, is_dir = parts[:MAX_DEPTH], True
                while open_dirs and parts[: len(open_dirs[-1])] != open_dirs[-1]:
                    open_dirs.pop()
                for level in range(depth + len(open_dirs) + 1, len(parts) + (1 if is_dir else 0)):
                    folder = parts[:level]
                    open_dirs.append(folder)
                    page.append(Entry(UserPath(folder, True), None))
                if not is_dir:
                    page.append(Entry(UserPath(parts), int(obj["Size"])))
            yield page

    async def upload_request(self, user: str, folder: UserPath) -> FileHTTPRequest | None:
        prefix = self._dir_prefix(user, folder.as_dir())
        # The SDK adds the `bucket` condition and, for a key ending in ${filename}, the
        # ["starts-with", "$key", prefix] condition that keeps uploads inside the folder.
        conditions: builtins.list[Any] = []
        if self._max_upload_bytes is not None:
            conditions.append(["content-length-range", 0, self._max_upload_bytes])
        with self._errors(folder):
            post = await self._s3.generate_presigned_post(
                Bucket=self.bucket,
                Key=prefix + "${filename}",
                Conditions=conditions,
                ExpiresIn=self._presign_expiry,
            )
        return FileHTTPRequest(method="post", url=post["url"], data=dict(post["fields"]))

    async def download_request(self, user: str, path: UserPath) -> FileHTTPRequest | None:
        if path.is_root:
            raise NotFound("the root is a folder, not a file")
        with self._errors(path):
            url = await self._s3.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._file_key(user, path),
                    # S3 answers with these instead of what the object was stored with, so the file
                    # arrives as it does through the API's own download.
                    "ResponseContentType": self._media_types.of(path.name),
                    "ResponseContentDisposition": attachment(path.name),
                },
                ExpiresIn=self._presign_expiry,
            )
        return FileHTTPRequest(method="get", url=url)

    # -- bytes -------------------------------------------------------------------------------------

    async def write(self, user: str, path: UserPath, chunks: AsyncIterator[bytes]) -> Entry:
        if path.is_root:
            raise Conflict("the root is a folder")
        target = path.as_file()
        key = self._file_key(user, target)

        async def no_folder_there() -> None:
            if await self._dir_exists(user, target):
                raise Conflict(f"{target.as_dir()} is a folder")

        checks: builtins.list[Callable[[], Awaitable[None]]] = [
            partial(self._refuse_files_along, user, target.parts[:-1]),
            no_folder_there,
        ]
        await _concurrently(checks)

        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: builtins.list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                # Keep at least one byte back, so the last part is never empty.
                while len(buffer) > self._part_size:
                    if upload_id is None:
                        with self._errors(target):
                            created = await self._s3.create_multipart_upload(Bucket=self.bucket, Key=key)
                        upload_id = created["UploadId"]
                    with memoryview(buffer) as view:
                        part = bytes(view[: self._part_size])
                    del buffer[: self._part_size]
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, part, target))
            with self._errors(target):
                if upload_id is None:
                    await self._s3.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
                else:
                    last = await self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer), target)
                    parts.append(last)
                    await self._s3.complete_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                    )
        except BaseException:  # cancellation too
            if upload_id is not None:
                await self._abort(key, upload_id)
            raise
        return Entry(target, size)

    async def _upload_part(
        self, key: str, upload_id: str, number: int, body: bytes, path: UserPath
    ) -> dict[str, Any]:
        with self._errors(path):
            response = await self._s3.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        return {"ETag": response["ETag"], "PartNumber": number}

    async def _abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload, even inside a cancelled task; a failure here is not reported."""
        with anyio.CancelScope(shield=True), suppress(ClientError, BotoCoreError):
            await self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    async def read(self, user: str, path: UserPath) -> AsyncIterator[bytes]:
        if path.is_root:
            raise NotFound("the root is a folder, not a file")
        try:
            response = await self._s3.get_object(Bucket=self.bucket, Key=self._file_key(user, path))
        except ClientError as e:
            if _is_missing(e):
                raise NotFound(f"{path} is not a file") from e
            raise self._unavailable(e, path) from e
        except BotoCoreError as e:
            raise self._unavailable(e, path) from e
        body = response["Body"]
        async with body:  # gives the connection back, also when the reader stops early
            while True:
                with self._errors(path):
                    chunk = await body.read(_READ_CHUNK)
                if not chunk:
                    break
                yield chunk

    # -- changes -----------------------------------------------------------------------------------

    async def mkdir(self, user: str, path: UserPath) -> None:
        if path.is_root or await self._dir_exists(user, path):
            return
        await self._refuse_files_along(user, path.parts)
        folders = [UserPath(path.parts[:depth], True) for depth in range(1, len(path.parts) + 1)]
        await _concurrently(partial(self._put_marker, user, folder) for folder in folders)

    async def rename(self, user: str, source: UserPath, target: UserPath) -> Entry:
        if target.is_within(source.as_dir()):
            raise Conflict(f"{source} cannot be moved into itself")
        entry = await self.stat(user, source)
        if entry is None:
            raise NotFound(f"{source} not found")
        if await self.stat(user, target) is not None:
            raise Conflict(f"{target} exists already")
        await self._refuse_files_along(user, target.parts[:-1])
        if entry.is_dir:
            moved = Entry(target.as_dir(), None)
            await self._move_folder(user, entry.path, moved.path)
        else:
            moved = Entry(target.as_file(), entry.size)
            src, dst = self._file_key(user, entry.path), self._file_key(user, moved.path)
            await self._copy(src, dst, entry.size or 0, entry.path)
            with self._errors(entry.path):
                await self._s3.delete_object(Bucket=self.bucket, Key=src)
        await self._put_marker(user, source.parent)  # the source's folder stays, as on disk
        return moved

    async def _move_folder(self, user: str, source: UserPath, target: UserPath) -> None:
        """Copy every key below `source` (its marker included) to `target`, then delete them.

        An empty folder is just its marker. Not atomic: a failure part-way leaves both copies."""
        src, dst = self._dir_prefix(user, source), self._dir_prefix(user, target)
        objects = [obj async for page in self._keys_below(user, source) for obj in page]
        await self._put_marker(user, target)
        await _concurrently(
            partial(self._copy, obj["Key"], dst + obj["Key"][len(src) :], int(obj["Size"]), source)
            for obj in objects
            if obj["Key"] != src
        )
        await self._delete_keys([obj["Key"] for obj in objects], source)

    async def _copy(self, src: str, dst: str, size: int, path: UserPath) -> None:
        source = {"Bucket": self.bucket, "Key": src}
        if size <= self.copy_limit:
            with self._errors(path):
                await self._s3.copy_object(Bucket=self.bucket, Key=dst, CopySource=source)
            return
        part_size = max(self.copy_part_size, -(-size // MAX_PARTS))
        with self._errors(path):
            upload_id = (await self._s3.create_multipart_upload(Bucket=self.bucket, Key=dst))["UploadId"]

        async def copy_part(number: int, start: int) -> dict[str, Any]:
            end = min(start + part_size, size) - 1
            with self._errors(path):
                response = await self._s3.upload_part_copy(
                    Bucket=self.bucket, Key=dst, UploadId=upload_id, PartNumber=number,
                    CopySource=source, CopySourceRange=f"bytes={start}-{end}",
                )
            return {"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number}

        try:
            parts = await _concurrently(
                partial(copy_part, number, start)
                for number, start in enumerate(range(0, size, part_size), 1)
            )
            with self._errors(path):
                await self._s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=dst, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            await self._abort(dst, upload_id)
            raise

    async def delete(self, user: str, path: UserPath) -> None:
        deleted = False
        if not path.is_root:
            key = self._file_key(user, path)
            if await self._head(key, path) is not None:
                with self._errors(path):
                    await self._s3.delete_object(Bucket=self.bucket, Key=key)
                deleted = True
        if not deleted:
            deleted = await self._delete_tree(user, path.as_dir())
        if deleted:
            await self._put_marker(user, path.parent)  # the folder it was in stays, as on disk

    async def _delete_tree(self, user: str, path: UserPath) -> bool:
        """Delete every key at or below the folder's prefix, a page at a time; whether there were any.

        Each round lists from the start again, so no continuation token outlives the keys it
        points past (S3 lists are strongly consistent)."""
        prefix = self._dir_prefix(user, path)
        deleted = False
        while True:
            with self._errors(path):
                page = await self._s3.list_objects_v2(
                    Bucket=self.bucket, Prefix=prefix, MaxKeys=MAX_DELETE_BATCH
                )
            keys = [obj["Key"] for obj in page.get("Contents", [])]
            if not keys:
                return deleted
            await self._delete_keys(keys, path)
            deleted = True

    async def _delete_keys(self, keys: builtins.list[str], path: UserPath) -> None:
        for start in range(0, len(keys), MAX_DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + MAX_DELETE_BATCH]]
            with self._errors(path):
                response = await self._s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            if errors := response.get("Errors"):
                codes = sorted({error.get("Code", "unknown") for error in errors})
                raise StorageUnavailable(
                    f"S3 could not delete {len(errors)} objects of {path} ({', '.join(codes)})"
                )


def _first(pair: tuple[str, Entry]) -> str:
    return pair[0]


def _key(path: UserPath) -> str:
    """The path's segments joined by ``/``. `UserPath.parse` never makes the segments refused here,
    but a path built from a listing could carry one; S3 keys are literal, HTTP layers may not be."""
    if any(name in _UNNAMEABLE for name in path.parts):
        raise InvalidPath(f"{path} has an empty, '.' or '..' segment")
    return path.key


def _checked(key: str, path: UserPath) -> str:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidPath(f"{path} is too long for this storage")
    return key


async def _concurrently(calls: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the calls, at most `_CONCURRENCY` at a time; the first failure cancels the rest and is raised."""
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def bounded(call: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await call()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(call)) for call in calls]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0]  # noqa: B904 - the error keeps its own cause
    return [task.result() for task in tasks]
