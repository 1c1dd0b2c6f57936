"""Who may call what, declared with each route as a Litestar guard (STYLE 14).

- `users_only`: a valid ID token (401 without one) of a member of the `users` group (403 otherwise).
  The caller's `Principal` is kept as the connection's user, which the `principal` dependency hands
  to the handler: a handler cannot see a principal its route's guards did not check.
- `internal_only`: the worker-facing API's shared key in `x-api-key`, compared in constant time;
  with no key configured the internal routes are closed to everyone (401).

Guards run before the body is read or a dependency resolved, so an unauthenticated request learns
nothing from the route (no 422 for a body it was never allowed to send).
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from decode_userapi.domain.errors import Unauthenticated
from decode_userapi.domain.identity import Principal
from decode_userapi.entrypoints.http.deps import bearer_token
from decode_userapi.services.users import UserService


async def users_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The caller must be signed in and in the `users` group."""
    users: UserService = connection.app.state.users
    principal: Principal = await users.authenticate(bearer_token(connection))
    connection.scope["user"] = principal.require_group()


def internal_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The caller must present the internal API key."""
    expected: str | None = connection.app.state.internal_api_key
    given = connection.headers.get("x-api-key")
    if not expected or given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthenticated("a valid x-api-key header is needed")
