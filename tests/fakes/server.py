"""A fake HTTP peer's plumbing: an ASGI app served by uvicorn in a thread on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Self

import uvicorn


class LocalAsgiServer:
    """Subclasses are ASGI apps (`__call__`); this starts and stops them. `url` is the base URL."""

    name = "fake server"

    def __init__(self) -> None:
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError(f"the {self.name} is not running")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on such sockets, and without it
        # Nagle's algorithm and delayed ACKs add ~40 ms to every response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(self, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=self.name)
        thread.start()
        deadline = time.monotonic() + 5
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError(f"the {self.name} did not start")
            time.sleep(0.005)
        self._server, self._thread, self._port = server, thread, sock.getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._server = self._thread = self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
