"""Brute-force protection for `POST /token` and `POST /login`: sliding-window limits kept in memory.

Every attempt that reaches the password check counts, whether the password was right or wrong, once
against the username and once against the client address. Refused attempts (429) do not count, so a
client that waits `Retry-After` seconds always gets through again.

The counters live in this process: with several replicas each one counts on its own, so the
effective limit is the configured one times the number of replicas. That is enough to make online
guessing slow; it is not a global quota.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.exceptions import TooManyRequestsException

WINDOW_SECONDS = 60.0
MAX_KEYS = 100_000  # per limiter; beyond it the least recently used keys are forgotten


class SlidingWindow:
    """At most `limit` hits per key in any `window` seconds. `limit <= 0` means no limit."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        # key -> times of its hits in the window, oldest first; keys ordered by their latest hit
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hits)

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may be hit again; 0 when it may be hit now."""
        if self.limit <= 0:
            return 0.0
        hits = self._hits.get(key)
        if hits is None:
            return 0.0
        now = self._clock()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) < self.limit:
            return 0.0
        return hits[0] + self.window - now

    def hit(self, key: str) -> None:
        """Count one hit of `key` now."""
        if self.limit <= 0:
            return
        now = self._clock()
        hits = self._hits.pop(key, None) or deque()
        hits.append(now)
        while len(hits) > self.limit:
            hits.popleft()
        self._hits[key] = hits  # now the most recently used key
        self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop keys with no hit in the window (they are the oldest), and the oldest beyond MAX_KEYS."""
        while self._hits:
            oldest_key, oldest = next(iter(self._hits.items()))
            if len(self._hits) > self._max_keys or not oldest or oldest[-1] <= now - self.window:
                del self._hits[oldest_key]
            else:
                break


class LoginRateLimiter:
    """The limits of `POST /token` and `POST /login`, per username and per client address."""

    def __init__(
        self,
        per_user: int,
        per_address: int,
        window: float = WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = SlidingWindow(per_user, window, clock=clock)
        self.addresses = SlidingWindow(per_address, window, clock=clock)

    def attempt(self, username: str, address: str) -> None:
        """Count an attempt, or raise `TooManyRequestsException` (429 with `Retry-After`) uncounted."""
        user_key = username.strip().casefold()  # spellings of one name share a budget
        wait = max(self.users.retry_after(user_key), self.addresses.retry_after(address))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequestsException(
                detail=f"too many sign-in attempts; try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
        self.users.hit(user_key)
        self.addresses.hit(address)


def client_address(request: Request[Any, Any, Any]) -> str:
    """The peer address as the ASGI server reports it (behind a proxy, let the server apply
    `X-Forwarded-For` from trusted proxies only, e.g. uvicorn's `--forwarded-allow-ips`)."""
    client = request.client
    return client.host if client is not None and client.host else "unknown"
