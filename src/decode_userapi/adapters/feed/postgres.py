"""The change feed on PostgreSQL: one dedicated connection per process doing
`LISTEN decode_job_events`. Migration 0005's trigger notifies that channel with the owner's user id
for every event inserted; PostgreSQL delivers a notification at commit, to every replica listening.

The connection is watched: if it is lost (server restart, `pg_terminate_backend`, failover, or a
network that went silent, found by a ping every `ping_every` seconds), the feed reconnects with the
project's backoff and then calls `on_reset`, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import URL, make_url

from decode_userapi.adapters.sql import EVENTS_CHANNEL as CHANNEL
from decode_userapi.domain.backoff import backoff_delay

log = structlog.get_logger(__name__)


def _nothing(*_: object) -> None:
    pass


class PostgresChangeFeed:
    def __init__(
        self,
        url: str | URL,
        *,
        connect_timeout: float = 10.0,
        ping_every: float = 30.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
    ) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._connect_timeout = connect_timeout
        self._ping_every = ping_every
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._on_change: Callable[[str], None] = _nothing
        self._on_reset: Callable[[], None] = _nothing
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connections = 0  # how many times it has started listening (reconnects: this less one)

    def listen(self, on_change: Callable[[str], None], on_reset: Callable[[], None]) -> None:
        self._on_change, self._on_reset = on_change, on_reset

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def wait_listening(self, timeout: float) -> bool:
        """Whether the feed listens within `timeout` seconds (for a start that wants to know)."""
        try:
            async with asyncio.timeout(timeout):
                await self._listening.wait()
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._listening = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="change-feed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_change(payload)

    async def _run(self) -> None:
        failures = 0
        while True:
            began = time.monotonic()
            try:
                await self._listen_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
                log.warning("change_feed.lost", error=str(e) or type(e).__name__)
            except Exception:  # a surprise must not end the listening for good: logged, retried
                log.exception("change_feed.failed")
            self._listening.clear()
            # A connection that held for a while is retried at once; one that keeps failing backs off.
            failures = 1 if time.monotonic() - began > self._backoff_cap * 2 else failures + 1
            delay = backoff_delay(failures, random.random(), base=self._backoff_base, cap=self._backoff_cap)
            await asyncio.sleep(delay)

    async def _listen_once(self) -> None:
        """Connect, listen, tell the listener to re-read, and return once the connection is lost."""
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": "decode-userapi-listen"},
        )
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _c: lost.set())
            await connection.add_listener(CHANNEL, self._notified)
            self.connections += 1
            self._listening.set()
            log.info("change_feed.listening", channel=CHANNEL, reconnect=self.connections > 1)
            self._on_reset()  # notifications before this one may be lost: re-read from each cursor
            while not lost.is_set():
                try:
                    async with asyncio.timeout(self._ping_every):
                        await lost.wait()
                except TimeoutError:  # quiet for a while: make sure the connection still answers
                    await connection.fetchval("SELECT 1", timeout=self._connect_timeout)
            log.warning("change_feed.lost", error="connection closed")
        finally:
            connection.terminate()
