"""The sign-in rate limiter on a hand-driven clock."""

from __future__ import annotations

import pytest
from litestar.exceptions import TooManyRequestsException

from decode_userapi.entrypoints.http.ratelimit import LoginRateLimiter, SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_allows_limit_then_says_how_long_to_wait() -> None:
    clock = Clock()
    window = SlidingWindow(3, 60, clock=clock)
    for _ in range(3):
        assert window.retry_after("k") == 0
        window.hit("k")
        clock.now += 10
    # hits at 1000, 1010, 1020; now 1030: the first leaves the window at 1060
    assert window.retry_after("k") == pytest.approx(30)
    assert window.retry_after("other") == 0
    clock.now = 1060
    assert window.retry_after("k") == 0
    window.hit("k")
    assert window.retry_after("k") == pytest.approx(10)  # 1010 leaves at 1070


def test_zero_means_no_limit() -> None:
    window = SlidingWindow(0, 60, clock=Clock())
    for _ in range(1000):
        window.hit("k")
    assert window.retry_after("k") == 0
    assert len(window) == 0


def test_idle_keys_are_forgotten_and_keys_are_bounded() -> None:
    clock = Clock()
    window = SlidingWindow(5, 60, clock=clock, max_keys=100)
    for i in range(50):
        window.hit(f"old{i}")
    clock.now += 61
    window.hit("new")
    assert len(window) == 1
    for i in range(500):
        window.hit(f"k{i}")
    assert len(window) == 100
    assert window.retry_after("k499") == 0  # the newest keys are kept


def test_limiter_counts_user_and_address_and_does_not_count_refusals() -> None:
    clock = Clock()
    limiter = LoginRateLimiter(per_user=2, per_address=3, clock=clock)
    limiter.attempt("Alice", "10.0.0.1")
    limiter.attempt("alice ", "10.0.0.2")  # one budget for spellings of one name
    with pytest.raises(TooManyRequestsException) as refused:
        limiter.attempt("ALICE", "10.0.0.3")
    assert refused.value.status_code == 429
    assert refused.value.headers == {"Retry-After": "60"}
    assert "try again" in refused.value.detail

    for name in ("u1", "u2", "u3"):  # the refused attempt from 10.0.0.3 was not counted
        limiter.attempt(name, "10.0.0.3")
    limiter.attempt("bob", "10.0.0.1")
    limiter.attempt("dave", "10.0.0.1")
    with pytest.raises(TooManyRequestsException):
        limiter.attempt("carol", "10.0.0.1")  # a fourth name from one address
    limiter.attempt("carol", "10.0.0.9")  # another address is not held back

    clock.now += 59.5
    with pytest.raises(TooManyRequestsException) as refused:
        limiter.attempt("alice", "10.0.0.4")
    assert refused.value.headers == {"Retry-After": "1"}  # rounded up, never 0
    clock.now += 1
    limiter.attempt("alice", "10.0.0.4")


def test_settings_from_env() -> None:
    from decode_userapi.config import Settings, SettingsError

    defaults = Settings.from_env({}, env_file=None)
    assert (defaults.token_rate_per_minute_user, defaults.token_rate_per_minute_address) == (10, 30)
    settings = Settings.from_env(
        {"TOKEN_RATE_PER_MINUTE_USER": "3", "TOKEN_RATE_PER_MINUTE_ADDRESS": "0"}, env_file=None
    )
    assert (settings.token_rate_per_minute_user, settings.token_rate_per_minute_address) == (3, 0)
    with pytest.raises(SettingsError, match="TOKEN_RATE_PER_MINUTE_USER"):
        Settings.from_env({"TOKEN_RATE_PER_MINUTE_USER": "ten"}, env_file=None)
