"""Hands jobs to the worker-facing API (CONTRACT "Talking to the worker-facing API")."""

from __future__ import annotations

from typing import Any

import httpx
import structlog

from decode_userapi.domain.errors import WorkerRejected, WorkerUnavailable

log = structlog.get_logger(__name__)

JOBS_PATH = "/_jobs"
EXCERPT_CHARS = 200
# Only these say "this payload is wrong": every other failure is the API's or our configuration's,
# and the dispatcher keeps retrying it rather than failing the user's job.
REJECTED = frozenset({400, 409, 422})
_KINDS = {401: "unauthorized", 403: "unauthorized", 404: "endpoint", 405: "endpoint", 408: "throttled", 429: "throttled"}


class HttpWorkerDispatch:
    """POSTs job payloads to `{base_url}/_jobs`, one attempt each: the dispatcher owns retrying."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
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
        try:
            response = await self._client.post(JOBS_PATH, json=payload)
        except httpx.TimeoutException as e:
            raise WorkerUnavailable(f"the worker-facing API did not answer: {_describe(e)}", kind="timeout") from e
        except httpx.HTTPError as e:
            raise WorkerUnavailable(
                f"the worker-facing API cannot be reached: {_describe(e)}", kind="connection"
            ) from e
        status = response.status_code
        if response.is_success:
            return
        excerpt = self._excerpt(response)
        if status in REJECTED:
            raise WorkerRejected(f"the worker-facing API refused the job (HTTP {status}): {excerpt}")
        kind = _KINDS.get(status, "server_error" if status >= 500 else "unexpected")
        raise WorkerUnavailable(
            f"the worker-facing API answered HTTP {status}: {excerpt}", kind=kind, retry_after=_retry_after(response)
        )

    def _excerpt(self, response: httpx.Response) -> str:
        """The start of an error body, on one line, with our key blanked should the server echo it."""
        text = " ".join(response.text[:EXCERPT_CHARS].split()) or "(empty body)"
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text


def _retry_after(response: httpx.Response) -> float | None:
    """A numeric `Retry-After` (seconds); the HTTP-date form is ignored (backoff applies)."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _describe(error: httpx.HTTPError) -> str:
    """`ConnectError: ...`; httpx messages name hosts and causes, never request headers."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
