"""The PostgreSQL change feed (one LISTEN connection per process): it hears NOTIFY, and after losing
its connection (server gone, or a network that went silent) it reconnects and asks its listener to
re-read, since notifications sent meanwhile are lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from decode_userapi.adapters.feed.postgres import PostgresChangeFeed
from decode_userapi.adapters.sql import EVENTS_CHANNEL
from tests.fakes.tcpproxy import TcpProxy
from tests.integration.harness import eventually

pytestmark = pytest.mark.postgres


class Heard:
    def __init__(self) -> None:
        self.changes: list[str] = []
        self.resets = 0

    def changed(self, user_id: str) -> None:
        self.changes.append(user_id)

    def reset(self) -> None:
        self.resets += 1


@pytest.fixture
async def proxy(postgres_database_url: str) -> AsyncIterator[TcpProxy]:
    url = make_url(postgres_database_url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    yield proxy
    await proxy.aclose()


async def notify(database_url: str, user_id: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, user_id)
    finally:
        await connection.close()


async def test_the_feed_hears_notifications_and_recovers_from_outages(postgres_database_url: str, proxy: TcpProxy) -> None:
    via_proxy = make_url(postgres_database_url).set(host="127.0.0.1", port=proxy.port)
    feed = PostgresChangeFeed(via_proxy, connect_timeout=0.5, ping_every=0.3, backoff_base=0.05, backoff_cap=0.2)
    heard = Heard()
    feed.listen(heard.changed, heard.reset)
    await feed.start()
    try:
        assert await feed.wait_listening(5)
        assert heard.resets == 1  # listening: whatever came before is to be read
        await notify(postgres_database_url, "alice")
        await eventually(lambda: heard.changes == ["alice"], timeout=5)

        # The server goes away, then comes back: the feed reconnects and says to re-read.
        await proxy.cut()
        await eventually(lambda: not feed.listening, timeout=5)
        await notify(postgres_database_url, "lost")  # nobody listens: lost, hence the reset
        await asyncio.sleep(0.3)  # reconnects fail meanwhile
        await proxy.restore()
        await eventually(lambda: heard.resets == 2, timeout=5)
        await notify(postgres_database_url, "bob")
        await eventually(lambda: heard.changes == ["alice", "bob"], timeout=5)

        # A network that goes silent (no reset, no answer): the ping finds out.
        await proxy.stall()
        await eventually(lambda: not feed.listening, timeout=5)
        await proxy.resume()
        await eventually(lambda: heard.resets >= 3 and feed.listening, timeout=5)
        assert feed.connections == heard.resets
    finally:
        await feed.aclose()
