"""`AsyncClient`: the one implementation of the client's requests (`Client` runs it on a thread)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import threading
import time
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgspec

from decode_cloud import _transfer as t
from decode_cloud.errors import ApiError, AuthError, DecodeCloudError, WaitTimeout
from decode_cloud.models import FileHTTPRequest, FileInfo, Job, JobCreate, JobEvent, TransferSummary, User

_RETRY_STATUSES = (429, 502, 503, 504)
_RETRIES = 4
_UPLOAD_REQUEST_REUSE = 60.0  # seconds; pre-signed requests live far longer (an hour by default)


class Progress(Protocol):
    """What a transfer reports as it goes (the CLI draws progress bars from it). Called on the
    client's event loop."""

    def start(self, files: int, total_bytes: int) -> None: ...
    def file_started(self, path: str, size: int) -> None: ...
    def advance(self, path: str, nbytes: int) -> None: ...
    def file_done(self, path: str, size: int, skipped: bool) -> None: ...


class NoProgress:
    def start(self, files: int, total_bytes: int) -> None:
        pass

    def file_started(self, path: str, size: int) -> None:
        pass

    def advance(self, path: str, nbytes: int) -> None:
        pass

    def file_done(self, path: str, size: int, skipped: bool) -> None:
        pass


class AsyncClient:
    """DECODE OpenCloud's user-facing API, asynchronously.

    Sign in with a `token`, or a `username` and `password` (through the service's `POST /token`, or
    Cognito's `InitiateAuth` when `/access_info` names a user pool); with a password, the client signs
    in again when the token expires. Use as `async with AsyncClient(...) as c:` or call `aclose()`.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
        parallel: int = 4,
        poll_interval: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
        blocking_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.token_expires_at = t.jwt_expiry(token) if token else None
        self.username, self._password = username, password
        self.parallel = max(1, parallel)
        self.poll_interval = poll_interval
        limits = httpx.Limits(max_connections=self.parallel + 4, max_keepalive_connections=self.parallel + 4)
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=httpx.Timeout(timeout, connect=10.0), limits=limits, transport=transport
        )
        # the blocking twin moves download bodies on worker threads (see `_download_file`)
        self._blocking_http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), limits=limits, transport=blocking_transport)
        self._login_lock = asyncio.Lock()
        self._upload_requests: dict[str, tuple[float, FileHTTPRequest]] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        self._blocking_http.close()

    # --- identity -------------------------------------------------------------------------------

    async def access_info(self) -> dict[str, Any]:
        response = await self._send("GET", "/access_info", auth=False)
        return msgspec.json.decode(response.content)  # type: ignore[no-any-return]

    async def login(self, username: str | None = None, password: str | None = None) -> str:
        """Sign in, keep the ID token (and its expiry) and return it."""
        username = username or self.username
        password = password or self._password
        if not username or password is None:
            raise AuthError("a username and a password are needed to sign in")
        info = await self.access_info()
        if "cognito" in info:
            token, expires_in = await self._cognito_login(info["cognito"], username, password)
        elif "local" in info:
            response = await self._send(
                "POST", info["local"].get("token_url", "/token"), data={"username": username, "password": password}, auth=False
            )
            answer = msgspec.json.decode(response.content)
            token, expires_in = answer["id_token"], answer.get("expires_in")
        else:
            raise AuthError(f"the service names no way to sign in: {info}")
        self.username, self._password, self.token = username, password, token
        self.token_expires_at = time.time() + expires_in if expires_in else t.jwt_expiry(token)
        return token

    async def _cognito_login(self, pool: Mapping[str, Any], username: str, password: str) -> tuple[str, int | None]:
        """Cognito's `InitiateAuth` with `USER_PASSWORD_AUTH`: one JSON POST, no AWS SDK. The endpoint
        follows the AWS SDK's variables (`AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER`, `AWS_ENDPOINT_URL`),
        so local emulators work."""
        endpoint = (
            os.environ.get("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER")
            or os.environ.get("AWS_ENDPOINT_URL")
            or f"https://cognito-idp.{pool['region']}.amazonaws.com"
        )
        body = {
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": pool["client_id"],
            "AuthParameters": {"USERNAME": username, "PASSWORD": password},
        }
        headers = {"X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth", "Content-Type": "application/x-amz-json-1.1"}
        response = await self._http.post(endpoint.rstrip("/") + "/", content=msgspec.json.encode(body), headers=headers)
        if response.status_code >= 400:
            error = ApiError.from_response(response)
            if isinstance(error.detail, str) or error.detail is None:
                with contextlib.suppress(msgspec.DecodeError):
                    error.detail = msgspec.json.decode(response.content).get("message", error.detail)
            raise error
        result = msgspec.json.decode(response.content).get("AuthenticationResult")
        if not result:
            raise AuthError(f"Cognito asks for a challenge this client does not answer: {response.text[:200]}")
        return result["IdToken"], result.get("ExpiresIn")

    async def _authorization(self) -> dict[str, str]:
        if self.token is None or t.expires_soon(self.token_expires_at):
            if self.username and self._password is not None:
                async with self._login_lock:
                    if self.token is None or t.expires_soon(self.token_expires_at):
                        await self.login()
            elif self.token is None:
                raise AuthError("not signed in: give a token, or a username and a password")
        return {"authorization": f"Bearer {self.token}"}

    # --- requests -------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        ok: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """One request to the service: signs in as needed (again after a 401, once, when it can),
        retries 429/502/503/504 and connection failures a few times (honouring `Retry-After`), and
        raises `ApiError` with the service's `detail` for any other error status not in `ok`."""
        resigned = False
        extra = dict(kwargs.pop("headers", None) or {})
        for attempt in range(_RETRIES + 1):
            headers = {**extra, **(await self._authorization())} if auth else extra
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as error:
                # nothing was sent when the connection failed; else only idempotent requests are repeated
                if attempt == _RETRIES or (method not in ("GET", "PUT", "DELETE") and not isinstance(error, httpx.ConnectError)):
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if response.status_code == 401 and auth and not resigned and self.username and self._password is not None:
                resigned, self.token = True, None
                continue
            if response.status_code in _RETRY_STATUSES and attempt < _RETRIES:
                await asyncio.sleep(_retry_after(response, attempt))
                continue
            if response.status_code >= 400 and response.status_code not in ok:
                raise ApiError.from_response(response)
            return response
        raise AssertionError("unreachable")

    async def _json(self, method: str, path: str, type_: Any = Any, **kwargs: Any) -> Any:
        response = await self._send(method, path, **kwargs)
        return msgspec.json.decode(response.content, type=type_)

    # --- files ----------------------------------------------------------------------------------

    async def user(self) -> User:
        return await self._json("GET", "/user", User)  # type: ignore[no-any-return]

    async def ls(self, path: str = "", *, recursive: bool = False, show_dirs: bool = True) -> builtins.list[FileInfo]:
        """The entries of a remote folder (`""` is the root), sorted by path."""
        params = {"recursive": str(recursive).lower(), "show_dirs": str(show_dirs).lower()}
        folder = t.remote_path(path)
        return await self._json("GET", f"/files/{t.quoted(folder)}", list[FileInfo], params=params)  # type: ignore[no-any-return]

    async def mkdir(self, path: str) -> None:
        """Create a folder (and its parents) under `config/`, `data/` or `artifact/`."""
        await self._send("POST", f"/files/{t.quoted(t.remote_path(path))}/")

    async def mv(self, source: str, destination: str) -> FileInfo:
        """Rename a file or an empty folder."""
        body = {"path": t.remote_path(destination)}
        return await self._json("PUT", f"/files/{t.quoted(t.remote_path(source))}", FileInfo, json=body)  # type: ignore[no-any-return]

    async def rm(self, path: str) -> None:
        """Delete a file, or a folder with everything in it (no error when missing)."""
        await self._send("DELETE", f"/files/{t.quoted(t.remote_path(path))}")

    async def is_dir(self, path: str) -> bool:
        """Whether `path` is a remote folder (the root and the predefined folders always are)."""
        response = await self._send("GET", f"/files/{t.quoted(t.remote_path(path))}", ok=(404,), params={"show_dirs": "false"})
        return response.status_code != 404

    async def _remote_files(self, folder: str, *, recursive: bool = True) -> dict[str, FileInfo]:
        """Files under a remote folder, by path relative to it; empty when the folder is missing."""
        files, _ = await self._remote_tree(folder, show_dirs=False, recursive=recursive)
        return files

    async def _remote_tree(
        self, folder: str, *, show_dirs: bool = True, recursive: bool = True
    ) -> tuple[dict[str, FileInfo], builtins.list[str]]:
        """Files under a remote folder by path relative to it, and its subfolders (relative, no
        trailing slash); both empty when the folder is missing."""
        try:
            entries = await self.ls(folder, recursive=recursive, show_dirs=show_dirs)
        except ApiError as error:
            if error.status == 404:
                return {}, []
            raise
        prefix = t.remote_path(folder) + "/" if t.remote_path(folder) else ""
        files = {e.path[len(prefix) :]: e for e in entries if not e.is_dir}
        return files, [e.path[len(prefix) :].rstrip("/") for e in entries if e.is_dir]

    # -- upload

    async def upload(
        self,
        local: str | os.PathLike[str],
        remote: str,
        *,
        checksum: bool = False,
        progress: Progress | None = None,
    ) -> TransferSummary:
        """Upload a file, or a folder's contents into the remote folder `remote` (as `aws s3 cp
        --recursive` does). A file goes into `remote` when that is a folder (or ends in `/`), else to
        that path. Files already there with the same size are skipped (with `checksum`, the same
        content: compared with S3's MD5 ETag; where the service gives no hash, they are sent again).
        The bytes go through the service's `/url` flow: straight to S3 when it stores files there."""
        progress = progress or NoProgress()
        source = Path(local)
        kind = await asyncio.to_thread(_kind, source)
        if kind == "dir":
            files, dirs = await asyncio.to_thread(t.local_files, source)
            base = t.remote_path(remote)
            plan = [(path, t.remote_path(base, rel), size) for path, rel, size in files]
            existing = await self._remote_files(base)
            known = {t.remote_path(base, rel): info for rel, info in existing.items()}
            for folder in t.batched_paths([t.remote_path(base, d) for d in dirs] + [base]):
                await self.mkdir(folder)
        elif kind == "file":
            if remote.endswith("/") or await self.is_dir(remote):
                target = t.remote_path(remote, source.name)
            else:
                target = t.remote_path(remote)
            size: int | None = await asyncio.to_thread(_size, source)
            plan = [(source, target, size or 0)]
            parent = target.rpartition("/")[0]
            # the folder's own files only: a file upload into a large tree does not list all of it
            known = {t.remote_path(parent, k): v for k, v in (await self._remote_files(parent, recursive=False)).items()} if parent else {}
        else:
            raise FileNotFoundError(str(source))
        summary = TransferSummary(files_total=len(plan), bytes_total=sum(size for _, _, size in plan))
        progress.start(len(plan), summary.bytes_total)

        async def one(path: Path, target: str, size: int) -> None:
            listed = known.get(target)
            if listed is not None and t.may_be_size(listed.size, size) and await self._same_remote(target, path, size, checksum):
                summary.files_skipped += 1
                summary.bytes_skipped += size
                progress.file_done(target, size, skipped=True)
                return
            progress.file_started(target, size)
            await self._upload_file(path, target, size, progress)
            summary.files_transferred += 1
            summary.bytes_transferred += size
            progress.file_done(target, size, skipped=False)

        await self._each(plan, one)
        return summary

    async def _same_remote(self, target: str, path: Path, size: int, checksum: bool) -> bool:
        """Whether the remote file `target` already holds what `path` does. Listings give sizes rounded
        (`"3.4 MB"`), so the exact size (and S3's ETag) come from the headers of a ranged GET."""
        remote_size, etag = await self._remote_stat(target)
        if remote_size != size:
            return False
        if not checksum:
            return True
        remote_md5 = t.etag_md5(etag)
        if remote_md5 is None:
            return False  # the service exposes no hash here (local storage): send it again
        return await asyncio.to_thread(t.md5_file, path) == remote_md5

    async def _remote_stat(self, target: str) -> tuple[int | None, str | None]:
        request = await self.download_request(target)
        headers = {**request.headers, "range": "bytes=0-0"}
        async with self._http.stream("GET", request.url, headers=headers) as response:
            if response.status_code >= 400 and response.status_code != 416:
                await response.aread()
                raise ApiError.from_response(response)
            if response.status_code != 200:  # 206/416: a byte or nothing, read so the connection is reused
                await response.aread()
            return t.size_from_headers(response.status_code, response.headers), response.headers.get("etag")

    async def upload_request(self, folder: str) -> FileHTTPRequest:
        """The request that uploads files into `folder` (`POST /files/{folder}/url`)."""
        return await self._json("POST", f"/files/{t.quoted(t.remote_path(folder))}/url", FileHTTPRequest)  # type: ignore[no-any-return]

    async def _cached_upload_request(self, folder: str) -> tuple[FileHTTPRequest, bool]:
        """The upload request for `folder`, and whether it was just made. One request serves every
        file of the folder (S3's pre-signed POST names the key as `folder/${filename}`), so it is
        reused for up to `_UPLOAD_REQUEST_REUSE` seconds, which saves a round trip to the service per
        file (`_upload_file` asks for a new one when a reused one is refused)."""
        cached = self._upload_requests.get(folder)
        if cached is not None and time.monotonic() - cached[0] < _UPLOAD_REQUEST_REUSE:
            return cached[1], False
        request = await self.upload_request(folder)
        self._upload_requests[folder] = (time.monotonic(), request)
        return request, True

    async def _upload_file(self, path: Path, target: str, size: int, progress: Progress) -> None:
        folder, _, name = target.rpartition("/")
        sent = 0

        def advance(nbytes: int) -> None:
            nonlocal sent
            sent += nbytes
            progress.advance(target, nbytes)

        fresh = False
        for attempt in range(_RETRIES + 1):
            request, fresh = await self._cached_upload_request(folder)
            body = t.MultipartFile(request.data, name, path, size, advance)
            headers = {**request.headers, "content-type": body.content_type, "content-length": str(body.length)}
            response = await self._http.request(request.method.upper(), request.url, headers=headers, content=body.stream())
            if response.status_code in (401, 403) and not fresh:  # the reused request expired (or its token did)
                self._upload_requests.pop(folder, None)
                progress.advance(target, -sent)
                sent = 0
                continue
            if response.status_code in _RETRY_STATUSES and attempt < _RETRIES:
                progress.advance(target, -sent)  # sent again from the start
                sent = 0
                await asyncio.sleep(_retry_after(response, attempt))
                continue
            if response.status_code >= 400:
                raise ApiError.from_response(response)
            return

    # -- download

    async def download_request(self, path: str) -> FileHTTPRequest:
        """The request that downloads the file `path` (`GET /files/{path}/url`)."""
        return await self._json("GET", f"/files/{t.quoted(t.remote_path(path))}/url", FileHTTPRequest)  # type: ignore[no-any-return]

    async def download(
        self,
        remote: str,
        local: str | os.PathLike[str],
        *,
        checksum: bool = False,
        progress: Progress | None = None,
    ) -> TransferSummary:
        """Download a file, or a remote folder's contents into the local folder `local`. A file goes
        into `local` when that is a folder (or ends in `/`), else to that path. Each file is written
        to a hidden temporary name beside its target and renamed when complete, so an interrupted
        download never leaves a partial file under the real name. Files already there with the same
        size are skipped (with `checksum`, the same content: compared with S3's MD5 ETag; without a
        service-side hash they are downloaded again)."""
        progress = progress or NoProgress()
        destination = Path(local)
        remote_files: dict[str, FileInfo] = {}
        if await self.is_dir(remote):
            base = t.remote_path(remote)
            remote_files, remote_dirs = await self._remote_tree(base)
            plan: builtins.list[tuple[str, Path, str | None]] = [
                (t.remote_path(base, rel), destination.joinpath(*rel.split("/")), info.size) for rel, info in remote_files.items()
            ]
            # the folders too, so empty ones arrive as well (as `upload` creates them remotely)
            for folder in [destination] + [destination.joinpath(*rel.split("/")) for rel in remote_dirs]:
                await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        else:
            name = t.remote_path(remote).rpartition("/")[2]
            into = str(local).endswith(("/", os.sep)) or await asyncio.to_thread(_kind, destination) == "dir"
            target = destination / name if into else destination
            plan = [(t.remote_path(remote), target, None)]
        summary = TransferSummary(files_total=len(plan))
        # the listing's sizes are rounded ("3.4 MB"): enough for a progress bar's total and ETA
        progress.start(len(plan), sum(t.approx_bytes(remote_files[rel].size) for rel in remote_files) if remote_files else 0)

        async def one(source: str, target: Path, listed: str | None) -> None:
            size = await self._download_file(source, target, checksum, progress, listed)
            summary.bytes_total += abs(size)
            if size < 0:
                summary.files_skipped += 1
                summary.bytes_skipped += -size
            else:
                summary.files_transferred += 1
                summary.bytes_transferred += size

        await self._each(plan, one)
        return summary

    async def _download_file(self, source: str, target: Path, checksum: bool, progress: Progress, listed: str | None = None) -> int:
        """Download one file; its size, negative when it was skipped as already complete.

        The bytes move on a worker thread with blocking I/O (`_fetch`): per GiB that costs a third of
        the CPU of reading the body on the event loop (httpcore hands over 64 KiB per read, and each
        read through the async stack costs far more than a blocking `recv`; bench/client_transfer.py),
        and the disk writes overlap the network. Cancelling (Ctrl-C) sets `stop`, which the thread
        checks between reads: it deletes its temporary file and returns, and `asyncio.run` waits for it.
        `listed` is the file's size as the listing gives it (rounded), when there was one.
        """
        request = await self.download_request(source)
        stop = threading.Event()
        try:
            return await asyncio.to_thread(self._fetch, request, source, target, checksum, progress, stop, listed)
        except BaseException:
            stop.set()
            raise

    def _fetch(
        self,
        request: FileHTTPRequest,
        source: str,
        target: Path,
        checksum: bool,
        progress: Progress,
        stop: threading.Event,
        listed: str | None,
    ) -> int:
        local = _size(target)
        probed = False
        if local is not None and (listed is None or t.may_be_size(listed, local)):
            probed = True
            # complete already? A one-byte ranged GET says, and its body is read, so its connection is
            # reused (a GET of the whole file closed unread costs a new connection, on S3 a TLS handshake)
            one_byte = {**request.headers, "range": "bytes=0-0"}
            with self._blocking_http.stream(request.method.upper(), request.url, headers=one_byte) as probe:
                if probe.status_code >= 400 and probe.status_code != 416:
                    probe.read()
                    raise ApiError.from_response(probe)
                size = t.size_from_headers(probe.status_code, probe.headers)
                etag = probe.headers.get("etag")
                if probe.status_code != 200:  # 206/416: a byte or nothing; a 200 (Range ignored) is left unread
                    probe.read()
            if size == local and self._same_content(target, etag, checksum):
                progress.file_done(source, local, skipped=True)
                return -local
        with self._blocking_http.stream(request.method.upper(), request.url, headers=request.headers) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError.from_response(response)
            size = t.size_from_headers(response.status_code, response.headers)
            if not probed and size is not None and local == size and self._same_content(target, response.headers.get("etag"), checksum):
                progress.file_done(source, size, skipped=True)
                return -size
            progress.file_started(source, size or 0)
            _prepare(target)
            part = t.temp_name(target)
            written = 0
            try:
                with part.open("wb") as f:
                    for chunk in response.iter_raw():
                        if stop.is_set():
                            raise asyncio.CancelledError
                        f.write(chunk)
                        written += len(chunk)
                        progress.advance(source, len(chunk))
                if size is not None and written != size:
                    raise ApiError(response.status_code, f"{source}: {written} of {size} bytes arrived", url=str(request.url))
                os.replace(part, target)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
        progress.file_done(source, written, skipped=False)
        return written

    @staticmethod
    def _same_content(target: Path, etag: str | None, checksum: bool) -> bool:
        """For a local file of the remote one's size: whether it counts as the same (without
        `checksum`, yes; with it, when the ETag is an MD5 and equals the file's)."""
        if not checksum:
            return True
        remote_md5 = t.etag_md5(etag)
        return remote_md5 is not None and t.md5_file(target) == remote_md5

    async def _each(self, plan: builtins.list[Any], one: Any) -> None:
        """Run `one(*item)` for every item, `parallel` at a time; the first failure cancels the rest."""
        queue = iter(plan)

        async def worker() -> None:
            for item in queue:
                await one(*item)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.parallel, len(plan))):
                    group.create_task(worker())
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first failure as it is: ApiError, OSError, ...

    # --- jobs -----------------------------------------------------------------------------------

    async def applications(self) -> dict[str, Any]:
        """The application config: `{application: {version: {entrypoint: {...}}}}`."""
        return await self._json("GET", "/jobs/applications")  # type: ignore[no-any-return]

    async def submit(self, job: JobCreate | Mapping[str, Any]) -> Job:
        body = msgspec.to_builtins(job) if isinstance(job, JobCreate) else dict(job)
        return await self._json("POST", "/jobs", Job, json=body)  # type: ignore[no-any-return]

    async def jobs(self, *, offset: int = 0, limit: int = 100, **filters: Any) -> builtins.list[Job]:
        """The caller's jobs, newest first; filters as the API takes them (`status`, `name`, ...)."""
        params = {"offset": offset, "limit": limit, **{k: v for k, v in filters.items() if v is not None}}
        return await self._json("GET", "/jobs", list[Job], params=params)  # type: ignore[no-any-return]

    async def job(self, job_id: int) -> Job:
        return await self._json("GET", f"/jobs/{int(job_id)}", Job)  # type: ignore[no-any-return]

    async def cancel(self, job_id: int) -> Job:
        """Cancel a job wherever it is (`POST /jobs/{id}/cancel`): the job, now `canceled`. Its record,
        runtime details and output folders stay. `ApiError` 409 when it has ended already."""
        return await self._json("POST", f"/jobs/{int(job_id)}/cancel", Job)  # type: ignore[no-any-return]

    async def events(self, job_id: int, *, after: int = 0) -> builtins.list[JobEvent]:
        """The job's history (`GET /jobs/{id}/events`), oldest first: the events whose `id` is above
        `after` (0: all), every page of them."""
        found: builtins.list[JobEvent] = []
        while True:
            params = {"after": after, "limit": 1000}
            page: builtins.list[JobEvent] = await self._json("GET", f"/jobs/{int(job_id)}/events", list[JobEvent], params=params)
            if not page:
                return found
            found += page
            after = page[-1].id

    async def delete(self, job_id: int) -> None:
        """Delete a job and its output folders."""
        await self._send("DELETE", f"/jobs/{int(job_id)}")

    async def changes(self, job_id: int, *, poll_interval: float | None = None, live: bool = True) -> AsyncGenerator[Job, None]:
        """The job now, then again each time it changes, until it reaches a final state.

        The job is always read with `GET /jobs/{id}` and `If-None-Match` (a `304` costs the service one
        small read). When the service offers the live stream `GET /jobs/events/stream` (Server-Sent
        Events) and `live` is true, a message about this job makes the next read happen at once, and
        reads without one are spaced 30 s apart; the stream only says *when* to look, so a message
        lost in a reconnect costs at most one such interval. A service without the stream (it answers
        an error status) is read every `poll_interval` seconds.
        """
        interval = self.poll_interval if poll_interval is None else poll_interval
        wake, stream = asyncio.Event(), {"up": False}
        listener = asyncio.create_task(self._listen(int(job_id), wake, stream)) if live else None
        etag: str | None = None
        try:
            while True:
                wake.clear()  # before the read: a message arriving during it triggers another
                headers = {"if-none-match": etag} if etag else {}
                response = await self._send("GET", f"/jobs/{int(job_id)}", headers=headers)
                if response.status_code != 304:
                    etag = response.headers.get("etag")
                    job = msgspec.json.decode(response.content, type=Job)
                    yield job
                    if job.is_final:
                        return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(interval, 30.0) if stream["up"] else interval)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _listen(self, job_id: int, wake: asyncio.Event, stream: dict[str, bool]) -> None:
        """Set `wake` for each message of `GET /jobs/events/stream` about `job_id`; reconnect (with
        `Last-Event-ID`) when the stream ends; return for good when the service has no stream."""
        last_id: str | None = None
        while True:
            try:
                headers = {"accept": "text/event-stream", **(await self._authorization())}
                if last_id is not None:
                    headers["last-event-id"] = last_id
                timeout = httpx.Timeout(10.0, read=60.0)  # the service sends a keep-alive every 15 s
                async with self._http.stream("GET", "/jobs/events/stream", headers=headers, timeout=timeout) as response:
                    if response.status_code != 200 or not response.headers.get("content-type", "").startswith("text/event-stream"):
                        return  # no live stream here (or it refused us): reading every poll_interval does it all
                    stream["up"] = True
                    wake.set()  # read the job once more: a change between the first read and now was not streamed
                    data: builtins.list[str] = []
                    async for line in response.aiter_lines():
                        if line.startswith("id:"):
                            last_id = line[3:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif not line and data:
                            if t.sse_concerns("\n".join(data), job_id):
                                wake.set()
                            data = []
            except (httpx.HTTPError, DecodeCloudError):
                pass
            stream["up"] = False
            wake.set()  # read the job once now: the gap may have hidden a change
            await asyncio.sleep(2.0)  # the stream's `retry:`

    async def wait(self, job_id: int, *, timeout: float | None = None, poll_interval: float | None = None) -> Job:
        """The job once it is `finished`, `error` or `canceled`; `WaitTimeout` after `timeout` seconds."""
        last: Job | None = None

        async def follow() -> Job:
            nonlocal last
            async for job in self.changes(job_id, poll_interval=poll_interval):
                last = job
            assert last is not None
            return last

        try:
            return await asyncio.wait_for(follow(), timeout)
        except TimeoutError:
            raise WaitTimeout(last or await self.job(job_id)) from None


def _prepare(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    t.remove_stale_parts(target)


def _kind(path: Path) -> str | None:
    return "dir" if path.is_dir() else "file" if path.is_file() else None


def _size(path: Path) -> int | None:
    """The size of a regular file; None when there is none at `path`."""
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def _retry_after(response: httpx.Response, attempt: int) -> float:
    value: str = response.headers.get("retry-after", "")
    try:
        return min(float(value), 10.0)
    except ValueError:
        return 0.2 * 2.0**attempt
