"""The application catalog from an S3 object (`APPLICATION_CONFIG_FILE=s3://bucket/key`), re-read
while the service runs.

At most once per `check_interval` seconds, one caller asks S3 for the object with a conditional GET
(`If-None-Match: <ETag last read>`): 304 means unchanged, anything else is the new version. A new
version that is broken is logged once (per ETag) and the last good catalog keeps serving. A check
that fails (S3 unreachable, the object deleted, access denied) keeps the last good catalog too; it
is logged once per distinct problem, and its recovery once. Callers that arrive while a check is in
flight are served the last good catalog without waiting for it.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
import structlog
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from decode_userapi.adapters.aws import s3_client_config
from decode_userapi.adapters.catalog.yaml_file import parse_catalog
from decode_userapi.domain.applications import Catalog, CatalogError

log = structlog.get_logger(__name__)

_NOT_MODIFIED_CODES = frozenset({"304", "NotModified"})
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_DENIED_CODES = frozenset(
    {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key.yaml` -> `("bucket", "some/key.yaml")`; `ValueError` for anything else."""
    scheme, sep, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme != "s3" or not sep or not bucket or not key or key.endswith("/") or bucket != bucket.strip():
        raise ValueError(f"{uri!r} is not an S3 object URI of the form s3://bucket/key")
    return bucket, key


# A version of the object: its ETag, and its catalog or what is wrong with it.
Version = tuple[str | None, Catalog | CatalogError]


class S3CatalogSource:
    def __init__(
        self,
        uri: str,
        *,
        check_interval: float = 10.0,
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
        session: aioboto3.Session | None = None,
    ) -> None:
        """`endpoint_url=None` lets the AWS SDK's own settings apply (`AWS_ENDPOINT_URL_S3`,
        `AWS_ENDPOINT_URL`, profiles); `max_attempts` counts the first try."""
        self.uri = uri
        self.bucket, self.key = parse_s3_uri(uri)
        self._check_interval = check_interval
        self._region = region
        self._endpoint_url = endpoint_url
        self._config = s3_client_config(
            region, connect_timeout=connect_timeout, read_timeout=read_timeout, max_attempts=max_attempts
        )
        self._session = session or aioboto3.Session()
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._catalog: Catalog | None = None
        self._etag: str | None = None  # of the version last read, good or bad
        self._problem: str | None = None  # why the last check failed, if it did
        self._next_check = 0.0
        self._lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the client and load the object; `CatalogError` if it is missing, unreadable or broken."""
        if self._stack is not None:
            return
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                self._session.client(
                    "s3", region_name=self._region, endpoint_url=self._endpoint_url, config=self._config
                )
            )
            fetched = await self._fetch(None)
            assert fetched is not None  # an unconditional GET is never "not modified"
            etag, result = fetched
            if isinstance(result, CatalogError):
                raise result
        except (ClientError, BotoCoreError) as e:
            await self._abandon(stack)
            raise CatalogError(f"{self.uri}: cannot read the application config: {self._describe(e)}") from e
        except BaseException:
            await self._abandon(stack)
            raise
        self._stack, self._etag, self._catalog = stack, etag, result
        self._next_check = time.monotonic() + self._check_interval
        log.info("catalog.loaded", uri=self.uri, etag=etag, applications=sorted(result.applications))

    async def _abandon(self, stack: AsyncExitStack) -> None:
        self._client = None
        await stack.aclose()

    async def aclose(self) -> None:
        """Close the client; the last catalog read is still served, no longer re-checked."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # -- the port ----------------------------------------------------------------------------------

    async def current(self) -> Catalog:
        if self._catalog is None:
            raise RuntimeError("S3CatalogSource.start() was not awaited")
        # One caller checks; the others are served the last good catalog meanwhile.
        if self._client is not None and time.monotonic() >= self._next_check and not self._lock.locked():
            async with self._lock:
                if time.monotonic() >= self._next_check:
                    try:
                        await self._refresh()
                    finally:
                        self._next_check = time.monotonic() + self._check_interval
        return self._catalog

    # -- internals ---------------------------------------------------------------------------------

    async def _fetch(self, etag: str | None) -> Version | None:
        """The object's current version, or None if its ETag is still `etag`. Raises botocore errors."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if etag is not None:
            request["IfNoneMatch"] = etag
        try:
            response = await self._client.get_object(**request)
        except ClientError as e:
            if etag is not None and _code(e) in _NOT_MODIFIED_CODES:
                return None
            raise
        async with response["Body"] as body:
            data = await body.read()
        new_etag = response.get("ETag")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            return new_etag, CatalogError(f"{self.uri}: the application config is not UTF-8 text: {e}")
        try:
            return new_etag, await asyncio.to_thread(parse_catalog, text, self.uri)
        except CatalogError as e:
            return new_etag, e

    async def _refresh(self) -> None:
        try:
            fetched = await self._fetch(self._etag)
        except (ClientError, BotoCoreError) as e:
            problem = self._describe(e)
            if problem != self._problem:
                log.warning("catalog.check_failed", uri=self.uri, error=problem)
            self._problem = problem
            return
        if self._problem is not None:
            log.info("catalog.check_recovered", uri=self.uri)
            self._problem = None
        if fetched is None:
            return
        self._etag, result = fetched  # a bad version is remembered too, so it is logged only once
        if isinstance(result, CatalogError):
            log.error("catalog.reload_failed", uri=self.uri, etag=self._etag, error=str(result))
            return
        self._catalog = result
        log.info(
            "catalog.reloaded", uri=self.uri, etag=self._etag, applications=sorted(result.applications)
        )

    def _describe(self, e: Exception) -> str:
        """What went wrong, in words an operator can act on."""
        if isinstance(e, ClientError):
            code = _code(e)
            if code in _MISSING_CODES:
                return f"there is no object {self.key!r} in the bucket {self.bucket!r}"
            if code == "NoSuchBucket":
                return f"the bucket {self.bucket!r} does not exist"
            if code in _DENIED_CODES:
                return f"access to s3://{self.bucket}/{self.key} was denied ({code})"
            return f"S3 answered {code}"
        if isinstance(e, NoCredentialsError):
            return "no AWS credentials were found"
        return f"S3 cannot be reached: {e}"


def _code(e: ClientError) -> str:
    return e.response.get("Error", {}).get("Code", "") or str(
        e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "unknown")
    )
