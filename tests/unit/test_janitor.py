"""The storage adapters' background clean-up: rounds until closed, a failed round is not the last."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from decode_userapi.adapters.storage.janitor import Janitor


async def test_rounds_go_on_after_a_failure_and_stop_when_closed() -> None:
    cutoffs: list[datetime] = []

    async def clean(before: datetime) -> int:
        cutoffs.append(before)
        if len(cutoffs) == 1:
            raise OSError("the disk hiccupped")
        return 0

    janitor = Janitor("test", clean, age=3600, interval=0.01)
    janitor.start()
    for _ in range(200):
        if len(cutoffs) >= 3:
            break
        await asyncio.sleep(0.01)
    await janitor.aclose()
    done = len(cutoffs)
    assert done >= 3
    assert all(abs(c - (datetime.now(UTC) - timedelta(hours=1))) < timedelta(seconds=5) for c in cutoffs)
    await asyncio.sleep(0.05)
    assert len(cutoffs) == done  # closed: no more rounds


async def test_no_interval_no_rounds() -> None:
    calls: list[datetime] = []

    async def clean(before: datetime) -> int:
        calls.append(before)
        return 0

    janitor = Janitor("test", clean, age=0, interval=None)
    janitor.start()
    await asyncio.sleep(0.02)
    await janitor.aclose()
    assert calls == []
