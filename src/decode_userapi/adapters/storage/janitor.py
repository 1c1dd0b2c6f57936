"""A storage adapter's background clean-up: what interrupted uploads left behind, removed hourly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta

import structlog

log = structlog.get_logger(__name__)


class Janitor:
    """Calls `clean(now - age)` `first_delay` seconds after `start()` and then every `interval`
    seconds, in a task of its own, until `aclose()`. A failure is logged and retried at the next
    round; `interval=None`: never."""

    def __init__(
        self,
        storage: str,
        clean: Callable[[datetime], Awaitable[int]],
        age: float,
        interval: float | None,
        first_delay: float = 0.0,
    ) -> None:
        self._storage = storage
        self._clean = clean
        self._age = timedelta(seconds=age)
        self._interval = interval
        self._first_delay = first_delay
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._interval is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self._storage}-cleanup")

    async def _run(self) -> None:
        assert self._interval is not None
        await asyncio.sleep(self._first_delay)
        while True:
            try:
                await self._clean(datetime.now(UTC) - self._age)
            except Exception:
                log.exception("storage.cleanup_failed", storage=self._storage)
            await asyncio.sleep(self._interval)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
