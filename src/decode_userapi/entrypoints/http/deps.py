"""Request-scoped dependencies: who is calling (as checked by the route's guards), and the raw
path they asked for."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection

from decode_userapi.domain.errors import InvalidPath, Unauthenticated
from decode_userapi.domain.identity import Principal

MAX_TOKEN = 16 * 1024


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The bearer token from the Authorization header, or from the cookie `POST /login` sets."""
    value = connection.headers.get("authorization") or connection.cookies.get("Authorization") or ""
    value = value.strip().strip('"')
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("a bearer token is needed (Authorization: Bearer <ID token>)")
    if len(token) > MAX_TOKEN:
        raise Unauthenticated("the token is too long")
    return token.strip()


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller the `users_only` guard checked. A route without that guard has no principal: asking
    for one there fails loudly (500), it never authenticates on its own."""
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise RuntimeError(f"{request.url.path}: the route asks for a principal but has no users_only guard")
    return user


def raw_subpath(request: Request[Any, Any, Any], prefix: str) -> str:
    """The request path after `prefix` exactly as sent (percent-decoded once, not normalised)."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    raw = raw.split(b"?", 1)[0]  # some servers leave the query string in raw_path
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidPath("the path is not valid UTF-8") from e
    root = request.scope.get("root_path", "")
    if root and text.startswith(root):
        text = text[len(root) :]
    if not text.startswith(prefix):
        raise InvalidPath("unexpected path")
    return text[len(prefix) :]


def api_base_url(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")
