"""How long to wait before trying again: the one backoff rule every retry loop uses (pure)."""

from __future__ import annotations

# 2**60 times any sensible base is beyond every cap: larger exponents only risk float overflow.
_MAX_EXPONENT = 60


def backoff_delay(attempt: int, jitter: float, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (the first is 1).

    Exponential (`base`, 2·`base`, 4·`base`, ...), capped at `cap`, and spread by `jitter` (a random
    value in [0, 1)) over [50 %, 100 %] of that, so that clients failing together do not retry
    together. A server's `Retry-After` (seconds) replaces the backoff; it is capped too, so a server
    can never make us wait longer than we allow.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), not {jitter}")
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    return min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT)) * (0.5 + jitter / 2)
