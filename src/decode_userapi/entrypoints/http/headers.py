"""Security headers on every response, errors and unmatched routes included (a `before_send` hook).

The API answers JSON and file bytes that belong to one user: none of it may be cached, sniffed as
another type, framed, or leak the URL it came from. The interactive documentation under `/docs`
loads its script, style and icons from the service itself: its pages get a Content-Security-Policy
that allows exactly that (`'self'`), and may be cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.types import Message, Scope

ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
API_ONLY: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)


def security_headers(docs_path: str, docs_csp: str) -> Callable[[Message, Scope], Awaitable[None]]:
    """A `before_send` hook adding the headers; ones a handler set itself are left as they are."""
    docs = docs_path.rstrip("/")
    docs_only = ((b"content-security-policy", docs_csp.encode()),)

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        path: str = scope.get("path", "")
        is_docs = path == docs or path.startswith(f"{docs}/")
        headers = list(message.get("headers") or [])
        present = {name.lower() for name, _ in headers}
        for name, value in ALWAYS + (docs_only if is_docs else API_ONLY):
            if name not in present:
                headers.append((name, value))
        message["headers"] = headers

    return add_headers
