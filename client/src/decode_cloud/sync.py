"""`Client`: the synchronous API, a thin wrapper that runs `AsyncClient` on an event loop in a thread.

Every method forwards to the `AsyncClient` method of the same name; no request logic lives here.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import functools
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from decode_cloud.aio import AsyncClient, Progress
from decode_cloud.models import FileHTTPRequest, FileInfo, Job, JobCreate, JobEvent, TransferSummary, User

T = TypeVar("T")


class Client:
    """DECODE OpenCloud's user-facing API, synchronously. Same arguments as `AsyncClient`.

    >>> with Client("https://api.example.org", username="ada@example.org", password="…") as c:
    ...     c.upload("frames/", "data/run1")
    ...     job = c.submit({"job_name": "train1", "application": {...}, "attributes": {...}})
    ...     c.wait(job.id)
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self.aio: AsyncClient = self._portal.call(functools.partial(AsyncClient, url, **kwargs))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._portal_cm is not None:
            try:
                self._portal.call(self.aio.aclose)
            finally:
                self._portal_cm.__exit__(None, None, None)

    def _run(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run an `AsyncClient` coroutine on the portal's loop; an interrupt (Ctrl-C) in the calling
        thread cancels it there, so its clean-up (temporary files) runs before this returns."""
        future = self._portal.start_task_soon(functools.partial(method, *args, **kwargs))
        try:
            result: T = future.result()
            return result
        except BaseException:
            if not future.done():
                future.cancel()
                concurrent.futures.wait([future], timeout=10)
            raise

    @property
    def token(self) -> str | None:
        return self.aio.token

    def login(self, username: str | None = None, password: str | None = None) -> str:
        return self._run(self.aio.login, username, password)

    def access_info(self) -> dict[str, Any]:
        return self._run(self.aio.access_info)

    def user(self) -> User:
        return self._run(self.aio.user)

    def ls(self, path: str = "", *, recursive: bool = False, show_dirs: bool = True) -> builtins.list[FileInfo]:
        return self._run(self.aio.ls, path, recursive=recursive, show_dirs=show_dirs)

    def mkdir(self, path: str) -> None:
        self._run(self.aio.mkdir, path)

    def mv(self, source: str, destination: str) -> FileInfo:
        return self._run(self.aio.mv, source, destination)

    def rm(self, path: str) -> None:
        self._run(self.aio.rm, path)

    def is_dir(self, path: str) -> bool:
        return self._run(self.aio.is_dir, path)

    def upload(
        self, local: str | os.PathLike[str], remote: str, *, checksum: bool = False, progress: Progress | None = None
    ) -> TransferSummary:
        return self._run(self.aio.upload, local, remote, checksum=checksum, progress=progress)

    def download(
        self, remote: str, local: str | os.PathLike[str], *, checksum: bool = False, progress: Progress | None = None
    ) -> TransferSummary:
        return self._run(self.aio.download, remote, local, checksum=checksum, progress=progress)

    def upload_request(self, folder: str) -> FileHTTPRequest:
        return self._run(self.aio.upload_request, folder)

    def download_request(self, path: str) -> FileHTTPRequest:
        return self._run(self.aio.download_request, path)

    def applications(self) -> dict[str, Any]:
        return self._run(self.aio.applications)

    def submit(self, job: JobCreate | Mapping[str, Any]) -> Job:
        return self._run(self.aio.submit, job)

    def jobs(self, *, offset: int = 0, limit: int = 100, **filters: Any) -> builtins.list[Job]:
        return self._run(self.aio.jobs, offset=offset, limit=limit, **filters)

    def job(self, job_id: int) -> Job:
        return self._run(self.aio.job, job_id)

    def cancel(self, job_id: int) -> Job:
        return self._run(self.aio.cancel, job_id)

    def events(self, job_id: int, *, after: int = 0) -> builtins.list[JobEvent]:
        return self._run(self.aio.events, job_id, after=after)

    def delete(self, job_id: int) -> None:
        self._run(self.aio.delete, job_id)

    def wait(self, job_id: int, *, timeout: float | None = None, poll_interval: float | None = None) -> Job:
        return self._run(self.aio.wait, job_id, timeout=timeout, poll_interval=poll_interval)

    def changes(self, job_id: int, *, poll_interval: float | None = None, live: bool = True) -> Iterator[Job]:
        """The job now, then at each change until a final state (see `AsyncClient.changes`)."""
        changes: AsyncGenerator[Job, None] = self.aio.changes(job_id, poll_interval=poll_interval, live=live)
        try:
            while True:
                try:
                    yield self._run(changes.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            self._run(changes.aclose)
