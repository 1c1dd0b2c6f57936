"""One table from errors to HTTP answers. Every error body is `{"detail": str}`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.openapi import ResponseSpec

from decode_userapi.domain import errors as e

log = structlog.get_logger(__name__)

STATUS: dict[type[e.DomainError], int] = {
    e.BadRequest: 400,
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.NotAllowed: 405,
    e.Conflict: 409,
    e.PayloadTooLarge: 413,
    e.InvalidRequest: 422,
    e.DependencyUnavailable: 503,
    e.StorageFull: 507,
}
RETRY_AFTER_SECONDS = "5"


class ErrorView(msgspec.Struct):
    """The body of every error answer."""

    detail: str


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI entries of the error answers a route may give (replacing Litestar's default 400,
    whose body is not ours)."""
    return {
        status: ResponseSpec(data_container=ErrorView, description=HTTPStatus(status).phrase, generate_examples=False)
        for status in statuses
    }


def _status_of(exc: e.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _answer(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"detail": detail}, status_code=status, media_type=MediaType.JSON, headers=headers or {}
    )


def domain_error_handler(request: Request[Any, Any, Any], exc: e.DomainError) -> Response[Any]:
    status = _status_of(exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
        log.warning("request.dependency_unavailable", path=request.url.path, detail=exc.detail)
    return _answer(status, exc.detail, headers)


def _validation_detail(exc: ValidationException) -> str:
    """Each refused field first, by name (`offset: Expected `int`, got `str``), then Litestar's summary."""
    messages = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict) and item.get("message"):
            where = item.get("key")
            messages.append(f"{where}: {item['message']}" if where else str(item["message"]))
    return f"{'; '.join(messages)} ({exc.detail})" if messages else str(exc.detail)


def validation_error_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """A body or query refused for its shape or type: 422, as FastAPI-era clients expect (STYLE 9)."""
    return _answer(422, _validation_detail(exc))


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    detail = str(exc.detail)
    if type(exc) is ClientException and exc.status_code == 400:
        # Litestar's answer to a body that does not decode at all (malformed JSON): a shape refused.
        return _answer(422, f"body: {detail}")
    if exc.status_code >= 500:
        log.error("request.failed", path=request.url.path, detail=detail)
    return _answer(exc.status_code, detail, dict(exc.headers or {}))


def recursion_error_handler(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """JSON nested deeper than the interpreter's recursion limit (``[[[[…`` ten thousand deep) stops
    msgspec's decoding of a body with this error: a body refused for its shape (422), like any other. Any other
    `RecursionError` is a fault of ours."""
    if "while deserializing" in str(exc):
        return _answer(422, "body: the JSON is nested too deeply")
    return internal_error_handler(request, exc)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # Litestar calls exception handlers inside its `except` block: the traceback is there to log
    log.exception("request.crashed", path=request.url.path, method=request.method)  # noqa: LOG004
    return _answer(500, "internal server error")


EXCEPTION_HANDLERS = {
    e.DomainError: domain_error_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_exception_handler,
    RecursionError: recursion_error_handler,
    Exception: internal_error_handler,
}
