"""Revalidations (`If-None-Match`) answered 304 in front of a route's handler.

A poll whose tag is still current needs the caller checked and one cheap read, nothing else; going
through the handler, Litestar also read and validated every parameter, resolved the dependencies,
called the handler and rendered its `Response`: most of a 304's CPU (bench/RESULTS.md, "Cheap
polling"). The route middleware below runs the route's guards, asks the route's `tag_of` for the tag
the handler would send, and answers 304 itself when it matches; everything else goes on to the
handler, which answers as it always does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.status_codes import HTTP_304_NOT_MODIFIED
from litestar.types import ASGIApp, Receive, Scope, Send

from decode_userapi.domain.errors import DomainError

Connection = ASGIConnection[Any, Any, Any, Any]
# The tag of the answer the handler would give this (guarded) request, or None to leave the request
# to the handler (one this does not read exactly as the handler would).
TagOf = Callable[[Connection], Awaitable[str | None]]


def revalidation(
    tag_of: TagOf, matches: Callable[[str, str], bool], headers: Callable[[str], dict[str, str]]
) -> Callable[[ASGIApp], ASGIApp]:
    """Route middleware: a request whose `If-None-Match` `matches` the tag `tag_of` gives is answered
    304 with `headers(tag)`, after the route's guards (as Litestar runs them) admitted the caller.
    Goes on to the handler: no `If-None-Match`, or `*` (the handler knows whether there is an answer
    at all), a caller the guards refuse, no tag, a tag that does not match, a domain error on the way
    (a database fault: the handler meets it again and answers it as always)."""
    def middleware(app: ASGIApp) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            # Several header lines are one list (RFC 9110 5.3).
            if_none_match = b", ".join(v for k, v in scope["headers"] if k == b"if-none-match")
            if not if_none_match or if_none_match.strip() == b"*":
                await app(scope, receive, send)
                return
            connection: Connection = ASGIConnection(scope, receive, send)
            try:
                handler = scope["route_handler"]
                # The route's guards, as Litestar runs them (made async there), less its copy of the
                # handler for each guard call: ours read nothing from it.
                for guard in handler.resolve_guards():
                    await guard(connection, handler)  # type: ignore[misc]
                tag = await tag_of(connection)
            except DomainError:
                tag = None
            if tag is None or not matches(if_none_match.decode("latin-1"), tag):
                await app(scope, receive, send)
                return
            start: Any = {
                "type": "http.response.start",
                "status": HTTP_304_NOT_MODIFIED,
                "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers(tag).items()],
            }
            await send(start)
            end: Any = {"type": "http.response.body", "body": b""}
            await send(end)

        return handle

    return middleware
