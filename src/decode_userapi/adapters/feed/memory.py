"""The change feed within one process: the job store calls `notify(user_id)` after each commit that
recorded events (its `on_change` hook). For SQLite and the in-memory store, whose writes all come
from this process (several processes on one SQLite file do not see each other's changes live)."""

from __future__ import annotations

from collections.abc import Callable


def _nothing(*_: object) -> None:
    pass


class InProcessChangeFeed:
    def __init__(self) -> None:
        self._on_change: Callable[[str], None] = _nothing
        self._on_reset: Callable[[], None] = _nothing

    def listen(self, on_change: Callable[[str], None], on_reset: Callable[[], None]) -> None:
        self._on_change, self._on_reset = on_change, on_reset

    def notify(self, user_id: str) -> None:
        """A write that recorded events of `user_id`'s jobs has committed."""
        self._on_change(user_id)

    async def start(self) -> None:
        self._on_reset()

    async def aclose(self) -> None:
        pass
