"""Hands jobs to the worker-facing API (CONTRACT "Talking to the worker-facing API")."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import structlog

from decode_userapi.domain.errors import WorkerRejected, WorkerUnavailable

log = structlog.get_logger(__name__)

JOBS_PATH = "/_jobs"
# Faults worth another attempt; other httpx errors (unsupported scheme, bad proxy, ...) will not heal.
RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
EXCERPT_CHARS = 200


class HttpWorkerDispatch:
    """POSTs job payloads to `{base_url}/_jobs`, retrying transient faults with exponential backoff."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self._base_url,
                timeout=self._timeout,
                headers={"x-api-key": self._api_key} if self._api_key else {},
                transport=self._transport,
            )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def ping(self) -> str | None:
        if self._client is None:
            return "not started"
        try:
            await self._client.get("/", timeout=2.0)
        except httpx.HTTPError as e:
            return _describe(e)
        return None

    async def submit(self, payload: dict[str, Any]) -> None:
        if self._client is None:
            raise RuntimeError("HttpWorkerDispatch.start() was not awaited")
        fields = {"url": self._base_url + JOBS_PATH, "job_id": _job_id(payload)}
        problem = ""
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._client.post(JOBS_PATH, json=payload)
            except RETRY_ERRORS as e:
                problem = _describe(e)
            except httpx.HTTPError as e:
                log.error("worker.dispatch_failed", **fields, attempt=attempt, error=_describe(e))
                raise WorkerUnavailable(f"the worker-facing API cannot be reached: {_describe(e)}") from e
            else:
                if response.is_success:
                    return
                problem = f"HTTP {response.status_code}"
                if not _retryable(response.status_code):
                    excerpt = self._excerpt(response)
                    log.error("worker.dispatch_failed", **fields, attempt=attempt, error=problem, body=excerpt)
                    raise WorkerRejected(f"the worker-facing API refused the job ({problem}): {excerpt}")
            if attempt < self._attempts:
                delay = self._delay(attempt)
                log.warning("worker.dispatch_retry", **fields, attempt=attempt, error=problem, delay=round(delay, 3))
                await asyncio.sleep(delay)
        log.error("worker.dispatch_failed", **fields, attempt=self._attempts, error=problem)
        raise WorkerUnavailable(f"the worker-facing API is unavailable ({problem} after {self._attempts} attempts)")

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: about backoff, 2*backoff, 4*backoff, ... (±50%)."""
        return float(self._backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))

    def _excerpt(self, response: httpx.Response) -> str:
        """The start of an error body, on one line, with our key blanked should the server echo it."""
        text = " ".join(response.text[:EXCERPT_CHARS].split()) or "(empty body)"
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text


def _retryable(status: int) -> bool:
    """Overload and server faults may pass; any other refusal will be repeated."""
    return status in (408, 429) or status >= 500


def _describe(error: httpx.HTTPError) -> str:
    """`ConnectError: ...`; httpx messages name hosts and causes, never request headers."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _job_id(payload: dict[str, Any]) -> Any:
    try:
        return payload["job"]["meta"]["job_id"]
    except (KeyError, TypeError):
        return None
