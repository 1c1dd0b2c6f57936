"""Streaming multipart/form-data: the `file` field's bytes go to storage as they arrive.

Nothing is buffered here beyond one network chunk (storage adapters may gather about 1 MiB into one
write); the size limit is enforced while streaming, so an oversized upload is refused (413) and the
storage adapter removes what it had started to write.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from decode_userapi.domain.errors import BadRequest, PayloadTooLarge

_BEGIN, _HEADER, _DATA, _END = range(4)
# python-multipart bounds each part's headers (8 lines of 4 KiB: "malformed", 400); these bound the rest.
MAX_PARTS = 32  # parts up to and including the file's (a browser's form sends one or a few)
MAX_FIELD_BYTES = 1024**2  # bytes of the parts before the file's, which are read and dropped


class MultipartFile:
    """Reads a request body up to the first part named `field` that carries a filename."""

    def __init__(self, request: Request[Any, Any, Any], field: str, max_bytes: int) -> None:
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise BadRequest("the upload must be multipart/form-data with a 'file' field")
        self._body = request.stream().__aiter__()
        self._field = field
        self._max = max_bytes
        self._events: deque[tuple[int, Any]] = deque()
        self._header_name = b""
        self._headers: dict[bytes, bytes] = {}
        self._done = False
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
        self.filename = ""

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        key = self._header_name.lower()
        self._headers[key] = self._headers.get(key, b"") + data[start:end]

    def _on_header_end(self) -> None:
        self._header_name = b""

    async def _next_event(self) -> tuple[int, Any]:
        while not self._events:
            if self._done:
                raise BadRequest("the upload has no 'file' field with a file name")
            try:
                chunk = await self._body.__anext__()
            except StopAsyncIteration:
                self._done = True
                self._parser.finalize()
                continue
            try:
                self._parser.write(chunk)
            except MultipartParseError as e:
                raise BadRequest(f"malformed multipart body: {e}") from e
        return self._events.popleft()

    async def open(self) -> str:
        """Advance to the file part; return its file name (not yet checked as a path)."""
        parts = skipped = 0
        while True:
            kind, value = await self._next_event()
            if kind == _BEGIN:
                parts += 1
                if parts > MAX_PARTS:
                    raise PayloadTooLarge(f"the upload has more than {MAX_PARTS} parts before its file")
                self._headers = {}
            elif kind == _DATA:
                skipped += len(value)
                if skipped > MAX_FIELD_BYTES:
                    raise PayloadTooLarge(f"the upload has more than {MAX_FIELD_BYTES} bytes before its file")
            elif kind == _HEADER:
                _, options = parse_options_header(value.get(b"content-disposition", b""))
                name = options.get(b"name", b"").decode("utf-8", "replace")
                filename = options.get(b"filename")
                if name == self._field and filename is not None:
                    self.filename = filename.decode("utf-8", "replace")
                    return self.filename

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file part's bytes, as they arrive."""
        total = 0
        while True:
            kind, value = await self._next_event()
            if kind == _END:
                return
            if kind == _DATA and value:
                total += len(value)
                if total > self._max:
                    raise PayloadTooLarge(f"the file is larger than the upload limit of {self._max} bytes")
                yield value
