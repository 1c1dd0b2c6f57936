"""Errors of the client: every refusal of the service carries its status and its `detail`."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec


class DecodeCloudError(Exception):
    """Base class of the client's errors."""


class ApiError(DecodeCloudError):
    """The service (or S3, for a pre-signed request) answered with an error status."""

    def __init__(self, status: int, detail: Any, *, method: str = "", url: str = "", request_id: str | None = None) -> None:
        self.status = status
        self.detail = detail
        self.method = method
        self.url = url
        self.request_id = request_id
        super().__init__(f"{status}: {detail}")

    @classmethod
    def from_response(cls, response: httpx.Response, body: bytes | None = None) -> ApiError:
        raw = response.content if body is None else body
        detail: Any
        try:
            decoded = msgspec.json.decode(raw) if raw else None
            detail = decoded.get("detail", decoded) if isinstance(decoded, dict) else decoded
        except msgspec.DecodeError:
            # S3 answers XML; keep its text, short
            detail = raw.decode("utf-8", "replace")[:500]
        if detail in (None, ""):
            detail = response.reason_phrase
        return cls(
            response.status_code,
            detail,
            method=response.request.method,
            url=str(response.request.url.copy_with(query=None)),
            request_id=response.headers.get("x-request-id"),
        )


class AuthError(DecodeCloudError):
    """No way to sign in: no token, or a token expired with no password to sign in again."""


class WaitTimeout(DecodeCloudError):
    """`wait` gave up before the job reached a final state."""

    def __init__(self, job: Any) -> None:
        self.job = job
        super().__init__(f"job {job.id} still {job.status}")
