"""Who may call what, declared with each route as a Litestar guard (STYLE 14).

- `users_only`: a valid ID token (401 without one) of a member of the `users` group (403 otherwise).
  The caller's `Principal` is kept as the connection's user, which the `principal` dependency hands
  to the handler: a handler cannot see a principal its route's guards did not check.
- `internal_only`: the worker-facing API's shared key in `x-api-key`, compared in constant time;
  with no key configured the internal routes are closed to everyone (401).
- Cross-site request forgery: a request authenticated by the `POST /login` cookie (no
  `Authorization` header) with an unsafe method (anything but GET, HEAD, OPTIONS) must come from the
  service's own origin or `FRONTEND_URL`'s, as its `Origin` header says (or, without one, its
  `Referer`); else 403. The browser sends the cookie with whatever page caused the request, but it
  sets `Origin` itself. Bearer tokens are never sent by a browser on its own: not checked.

Guards run before the body is read or a dependency resolved, so an unauthenticated request learns
nothing from the route (no 422 for a body it was never allowed to send).
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from decode_userapi.domain.errors import Forbidden, Unauthenticated
from decode_userapi.domain.identity import Principal
from decode_userapi.entrypoints.http.deps import bearer_token
from decode_userapi.services.users import UserService


async def users_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The caller must be signed in and in the `users` group."""
    users: UserService = connection.app.state.users
    principal: Principal = await users.authenticate(bearer_token(connection))
    if not connection.headers.get("authorization") and connection.scope.get("method", "GET") not in SAFE_METHODS:
        require_own_origin(connection)
    connection.scope["user"] = principal.require_group()


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL or an `Origin` value, lower-cased, the default port filled in;
    None for `null` or anything that is not an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port or DEFAULT_PORTS[scheme]


def own_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str, str, int] | None:
    """The service's origin as this request reached it: the scheme of the connection (which the
    server takes from `X-Forwarded-Proto` when the proxy is trusted: uvicorn's
    `FORWARDED_ALLOW_IPS`) and the `Host` header."""
    host = connection.headers.get("host")
    if not host:
        server = connection.scope.get("server")
        if not server:
            return None
        host = f"{server[0]}:{server[1]}"
    return origin_of(f"{connection.scope.get('scheme', 'http')}://{host}")


def require_own_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """403 unless the request's `Origin` (else `Referer`) is the service's own origin or FRONTEND_URL's."""
    given = connection.headers.get("origin")
    header = "Origin"
    if given is None:
        given, header = connection.headers.get("referer"), "Referer"
    if given is None:
        raise Forbidden(
            "a request signed in by the session cookie must say where it comes from (Origin or Referer header): "
            "send it from the service's page, or authenticate with Authorization: Bearer"
        )
    allowed = {own_origin(connection), *(origin_of(url) for url in connection.app.state.trusted_origins)}
    if origin_of(given) not in allowed - {None}:
        raise Forbidden(
            f"cross-site request refused: {header} {given[:200]!r} is not this service's origin; a request signed in by "
            "the session cookie must come from the service's own pages (or FRONTEND_URL), else use Authorization: Bearer"
        )


def internal_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The caller must present the internal API key."""
    expected: str | None = connection.app.state.internal_api_key
    given = connection.headers.get("x-api-key")
    if not expected or given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthenticated("a valid x-api-key header is needed")
