"""A zip archive produced as a stream, with memory bounded by one chunk (stored, ZIP64-capable)."""

from __future__ import annotations

import time
import zipfile
from collections.abc import AsyncIterator, Callable, Sequence


class _Sink:
    """A write-only, non-seekable file: zipfile then writes data descriptors, so nothing is rewound."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        # zipfile hands over the very chunks we gave it: `bytes(data)` returns those as they are and
        # copies only a mutable buffer (whose owner may refill it).
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


async def zip_stream(
    members: Sequence[tuple[str, Callable[[], AsyncIterator[bytes]]]],
) -> AsyncIterator[bytes]:
    """Yield a zip of `members` (name, opener of a chunk stream), one member after the other."""
    sink = _Sink()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[call-overload]
        for name, opener in members:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, mode="w", force_zip64=True) as member:
                async for chunk in opener():
                    member.write(chunk)
                    data = sink.drain()
                    if data:
                        yield data
            data = sink.drain()
            if data:
                yield data
    yield sink.drain()
