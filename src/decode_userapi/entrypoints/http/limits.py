"""Bounds on a request's head that the HTTP server does not enforce.

uvicorn parses with httptools when it is installed (it is, with `uvicorn[standard]`), and httptools
passes on any number of header lines of any size (measured: a 1 MiB header line and 10,000 headers
both reach the app); h11 bounds only the bytes of an incomplete head. Request bodies are bounded
elsewhere (MAX_JSON_BYTES, MAX_UPLOAD_BYTES, the multipart reader's part limits).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024  # names and values together: ample for cookies and ID tokens


def header_limits(max_headers: int = MAX_HEADERS, max_bytes: int = MAX_HEADER_BYTES) -> Any:
    """ASGI middleware: a request with more than `max_headers` header lines, or more than `max_bytes`
    of them, is answered 431 before anything else reads it."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP:
                headers = list(scope["headers"])
                detail = None
                if len(headers) > max_headers:
                    detail = f"the request has more than {max_headers} headers"
                elif sum(len(name) + len(value) for name, value in headers) > max_bytes:
                    detail = f"the request's headers are larger than {max_bytes} bytes"
                if detail is not None:
                    body = msgspec.json.encode({"detail": detail})
                    start: Any = {
                        "type": "http.response.start",
                        "status": 431,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                    await send(start)
                    end: Any = {"type": "http.response.body", "body": body}
                    await send(end)
                    return
            await app(scope, receive, send)

        return handle

    return middleware
