"""Request-scoped dependencies: who is calling, and the raw path they asked for."""

from __future__ import annotations

from typing import Any

from litestar import Request

from decode_userapi.domain.errors import InvalidPath, Unauthenticated
from decode_userapi.domain.identity import Principal
from decode_userapi.ports.identity import IdentityProvider

MAX_TOKEN = 16 * 1024


def bearer_token(request: Request[Any, Any, Any]) -> str:
    """The bearer token from the Authorization header, or from the cookie `POST /login` sets."""
    value = request.headers.get("authorization") or request.cookies.get("Authorization") or ""
    value = value.strip().strip('"')
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("a bearer token is needed (Authorization: Bearer <ID token>)")
    if len(token) > MAX_TOKEN:
        raise Unauthenticated("the token is too long")
    return token.strip()


async def authenticate(request: Request[Any, Any, Any]) -> Principal:
    identity: IdentityProvider = request.app.state.identity
    return await identity.authenticate(bearer_token(request))


async def provide_caller(request: Request[Any, Any, Any]) -> Principal:
    """Any authenticated caller."""
    return await authenticate(request)


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """An authenticated member of the `users` group: the only callers of /files and /jobs."""
    return (await authenticate(request)).require_group()


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
