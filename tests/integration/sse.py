"""Test helpers for `GET /jobs/events/stream`: the app served by uvicorn in a thread (a streamed
answer never ends, so it needs a real server, not the test client), and a reader of SSE messages."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
import msgspec
import uvicorn

STREAM = "/jobs/events/stream"


class AppServer:
    """An ASGI app (lifespan on) served by uvicorn on a free loopback port, in a thread of its own."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="app server")
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app server did not start")
            time.sleep(0.01)
        self._server, self._thread, self.url = server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Message:
    event: str = "message"
    id: str | None = None
    data: Any = None
    comments: list[str] = field(default_factory=list)


class SseReader:
    """The messages of an SSE answer (fields as EventSource parses them), read in the background so
    that waiting for one with a timeout never cuts the stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.retry: int | None = None
        self.comments: list[str] = []
        self._messages: asyncio.Queue[Message | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        message, data = Message(), []
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data:
                        message.data = msgspec.json.decode("\n".join(data))
                        self._messages.put_nowait(message)
                    message, data = Message(), []
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    self.comments.append(value)
                elif name == "retry":
                    self.retry = int(value)
                elif name == "id":
                    message.id = value
                elif name == "event":
                    message.event = value
                elif name == "data":
                    data.append(value)
        except httpx.HTTPError:
            pass
        finally:
            self._messages.put_nowait(None)

    async def next(self, timeout: float = 5.0) -> Message:
        """The next message; `TimeoutError` if none comes within `timeout` seconds, `EOFError` if
        the stream ended."""
        async with asyncio.timeout(timeout):
            message = await self._messages.get()
        if message is None:
            self._messages.put_nowait(None)
            raise EOFError("the stream ended")
        return message

    async def ended(self, timeout: float = 5.0) -> bool:
        """Whether the stream ends (with no further message) within `timeout` seconds."""
        try:
            await self.next(timeout)
        except EOFError:
            return True
        return False

    async def nothing_for(self, seconds: float) -> None:
        """Assert that no message comes for `seconds`."""
        with contextlib.suppress(TimeoutError):
            message = await self.next(seconds)
            raise AssertionError(f"unexpected message {message}")

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def open_stream(http: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> AsyncIterator[SseReader]:
    async with http.stream("GET", STREAM, headers=headers, params=params, timeout=httpx.Timeout(10, read=None)) as r:
        assert r.status_code == 200, (await r.aread()).decode()
        reader = SseReader(r)
        try:
            yield reader
        finally:
            await reader.aclose()
