"""A TCP proxy on loopback that can be cut and restored (a server going away) or stalled and resumed
(a server that stops answering: a blackhole, where only the caller's own timeouts help)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target`. `cut()` drops every connection and refuses new ones
    until `restore()`; the port stays the same, as a restarted server's would."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None
        self.port = 0
        self.stalled = 0  # chunks (either way) held back by `stall()` right now

    async def start(self) -> TcpProxy:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        """Close the listener and every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()
        await self.resume()

    async def stall(self) -> None:
        """Keep accepting connections, but forward nothing either way until `resume()` (or `cut()`)."""
        assert self._flowing is not None
        self._flowing.clear()

    async def resume(self) -> None:
        assert self._flowing is not None
        self._flowing.set()

    async def aclose(self) -> None:
        await self.cut()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(upstream_writer)
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            for w in (writer, upstream_writer):
                w.close()
                self._writers.discard(w)
            self._tasks.discard(task)


    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if not self._flowing.is_set():
                    self.stalled += 1
                    try:
                        await self._flowing.wait()
                    finally:
                        self.stalled -= 1
                writer.write(data)
                await writer.drain()
        writer.close()


class ThreadedTcpProxy:
    """A `TcpProxy` on its own event loop in a thread, so it keeps forwarding while the test's loop
    is blocked (Litestar's test client runs the app in another thread and waits synchronously)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._proxy = TcpProxy(target_host, target_port)

    @property
    def port(self) -> int:
        return self._proxy.port

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def start(self) -> ThreadedTcpProxy:
        self._thread.start()
        self._call(self._proxy.start())
        return self

    def cut(self) -> None:
        self._call(self._proxy.cut())

    def restore(self) -> None:
        self._call(self._proxy.restore())

    def stall(self) -> None:
        self._call(self._proxy.stall())

    def resume(self) -> None:
        self._call(self._proxy.resume())

    @property
    def stalled(self) -> int:
        return self._proxy.stalled

    def close(self) -> None:
        self._call(self._proxy.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
