"""Database connections are handed out in the order they were asked for.

SQLAlchemy's asyncio pool gives a returned connection to whoever asks next, not to the caller that
has waited longest: a request that has just released a connection takes it straight back, and a
waiter it passes queues again at the back. Under load (32 requests, 10 connections) a few requests
then waited seconds while most waited nothing (bench/RESULTS.md, "Tail latency"). `Database`
queues checkouts itself, first come first served; these tests pin that down with one connection,
where the order of service is exactly the order of the queries' completion.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from decode_userapi.domain.errors import StoreUnavailable


async def test_checkouts_are_served_in_arrival_order_under_contention(database_url: str) -> None:
    """Eight closed-loop clients on one connection, like the benchmark's keep-alive connections: each
    takes a ticket as it asks for the connection and records it once served. A client that has just
    released the connection and asks again must queue behind the ones already waiting."""
    database = Database(database_url, pool_size=1)
    store = SqlJobStore(database)
    await store.start()
    tickets = itertools.count()
    served: list[int] = []

    async def client() -> None:
        for _ in range(15):
            ticket = next(tickets)  # taken in the same step as the checkout begins
            await store.get(1)
            served.append(ticket)

    try:
        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(8))), 60)
    finally:
        await store.aclose()
    assert len(served) == 8 * 15
    overtaken = [(a, b) for a, b in itertools.pairwise(served) if b < a]
    assert not overtaken, f"served out of order (ticket, then an earlier one): {overtaken[:5]}"


async def test_a_checkout_that_waits_past_the_pool_timeout_is_store_unavailable(database_url: str) -> None:
    store = SqlJobStore(Database(database_url, pool_size=1, pool_timeout=0.2))
    await store.start()
    try:
        async with store.unit_of_work() as uow:  # holds the only connection
            await uow.get(1)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.get(1)
            assert time.monotonic() - started < 5
        assert await store.get(1) is None  # the connection is free again
    finally:
        await store.aclose()


async def test_a_waiter_cancelled_in_the_queue_gives_its_turn_back(database_url: str) -> None:
    """A request cut off while waiting (client gone, deadline) must not keep a connection's place."""
    store = SqlJobStore(Database(database_url, pool_size=1, pool_timeout=2))
    await store.start()
    try:
        async with store.unit_of_work() as uow:
            await uow.get(1)
            waiting = [asyncio.create_task(store.get(1)) for _ in range(3)]
            await asyncio.sleep(0.05)
            waiting[1].cancel()
        results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 10)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], asyncio.CancelledError)
        for _ in range(3):  # and the one connection is still there to be had, at once
            assert await asyncio.wait_for(store.get(1), 1) is None
    finally:
        await store.aclose()
