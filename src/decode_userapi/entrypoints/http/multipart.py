"""Streaming multipart/form-data: each `file` part's bytes go to storage as they arrive.

Nothing is buffered here beyond one network chunk (storage adapters may gather about 1 MiB into one
write); the size limit is enforced per file while streaming, so an oversized file is refused (413)
and the storage adapter removes what it had started to write.

A body may carry several `file` parts (a browser's `<input type=file multiple>`, or a folder
upload). Their file names count by their last component only (RFC 7578 4.2): browsers send
`batch2/frames2.tif` for a file of a chosen folder, old Windows browsers `C:\\x\\frames2.tif`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from decode_userapi.domain.errors import InvalidRequest, PayloadTooLarge

MAX_FILES = 1000  # per request: each file costs a quota check and a write of its own
_BEGIN, _HEADER, _DATA, _END = range(4)
_SEPARATORS = re.compile(r"[/\\]")
# python-multipart bounds each part's headers (8 lines of 4 KiB: "malformed", 400); these bound the rest.
MAX_PARTS = 32  # parts that are not files (a browser's form sends none or a few)
MAX_FIELD_BYTES = 1024**2  # bytes of the parts that are not files, which are read and dropped


def upload_name(sent: str) -> str:
    """The name a file is stored under: the last component of the name the client sent."""
    name = _SEPARATORS.split(sent)[-1]
    if name in ("", ".", ".."):
        raise InvalidRequest(f"file: the file name {sent!r} does not end in a usable name")
    return name


class MultipartFiles:
    """Reads a request body, part by part, yielding each part named `field` that carries a filename."""

    def __init__(self, request: Request[Any, Any, Any], field: str, max_bytes: int) -> None:
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise InvalidRequest(f"{field}: the upload must be multipart/form-data with a {field!r} field")
        self._body = request.stream().__aiter__()
        self._field = field
        self._max = max_bytes
        self._events: deque[tuple[int, Any]] = deque()
        self._header_name = b""
        self._headers: dict[bytes, bytes] = {}
        self._done = False
        self._other_parts = self._other_bytes = 0
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": lambda: self._events.append((_BEGIN, None)),
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": lambda: self._events.append((_HEADER, dict(self._headers))),
                "on_part_data": lambda data, start, end: self._events.append((_DATA, bytes(data[start:end]))),
                "on_part_end": lambda: self._events.append((_END, None)),
            },
        )

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        key = self._header_name.lower()
        self._headers[key] = self._headers.get(key, b"") + data[start:end]

    def _on_header_end(self) -> None:
        self._header_name = b""

    async def _next_event(self) -> tuple[int, Any] | None:
        """The parser's next event; None at the end of the body."""
        while not self._events:
            if self._done:
                return None
            try:
                chunk = await self._body.__anext__()
            except StopAsyncIteration:
                self._done = True
                self._parser.finalize()
                continue
            try:
                self._parser.write(chunk)
            except MultipartParseError as e:
                raise InvalidRequest(f"{self._field}: malformed multipart body ({e})") from e
        return self._events.popleft()

    async def _next_file(self) -> str | None:
        """Advance to the next file part; its file name as sent, or None when there is none. The
        parts passed over on the way (other form fields) are bounded in number and size."""
        while (event := await self._next_event()) is not None:
            kind, value = event
            if kind == _BEGIN:
                self._headers = {}
            elif kind == _DATA:
                self._other_bytes += len(value)
                if self._other_bytes > MAX_FIELD_BYTES:
                    raise PayloadTooLarge(f"the upload has more than {MAX_FIELD_BYTES} bytes in parts other than files")
            elif kind == _HEADER:
                _, options = parse_options_header(value.get(b"content-disposition", b""))
                name = options.get(b"name", b"").decode("utf-8", "replace")
                filename = options.get(b"filename")
                if name == self._field and filename is not None:
                    return filename.decode("utf-8", "replace")
                self._other_parts += 1
                if self._other_parts > MAX_PARTS:
                    raise PayloadTooLarge(f"the upload has more than {MAX_PARTS} parts other than files")
        return None

    async def _chunks(self) -> AsyncIterator[bytes]:
        """The current file part's bytes, as they arrive."""
        total = 0
        while (event := await self._next_event()) is not None:
            kind, value = event
            if kind == _END:
                return
            if kind == _DATA and value:
                total += len(value)
                if total > self._max:
                    raise PayloadTooLarge(f"the file is larger than the upload limit of {self._max} bytes")
                yield value
        raise InvalidRequest(f"{self._field}: the multipart body ends inside a file")

    async def files(self) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        """(name to store under, its bytes) for each file part in order. Read each part's bytes to
        the end before asking for the next (what is left unread is skipped)."""
        count = 0
        while (sent := await self._next_file()) is not None:
            count += 1
            if count > MAX_FILES:
                raise PayloadTooLarge(f"at most {MAX_FILES} files can be uploaded in one request")
            chunks = self._chunks()
            yield upload_name(sent), chunks
            async for _ in chunks:  # whatever the consumer left unread
                pass
        if count == 0:
            raise InvalidRequest(f"{self._field}: the upload has no {self._field!r} field with a file name")
