from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class ChangeFeed(Protocol):
    """Which users' job events the store has committed, as it happens: the wake-up call of the live
    stream. It says only *whose* events changed (the stream reads them from the store), and is
    allowed to say it late or twice, never to stay silent: after an outage in which it may have
    missed something it calls `on_reset`, and the listener re-reads every user it watches.

    One per process, with one listener (`listen`, before `start`).
    """

    def listen(self, on_change: Callable[[str], None], on_reset: Callable[[], None]) -> None:
        """Call `on_change(user_id)` after a write that recorded events of `user_id`'s jobs has
        committed, and `on_reset()` once listening (again), when changes may have been missed. Both
        are called on the event loop that started the feed, and must not block."""
        ...

    async def start(self) -> None:
        """Start listening (in the background: a database that is down now is retried)."""
        ...

    async def aclose(self) -> None: ...
