"""The UserStore contract, run against every adapter: in memory, SQL on SQLite, SQL on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from decode_userapi.adapters.identity.memory_users import InMemoryUserStore
from decode_userapi.adapters.identity.sql_users import SqlUserStore
from decode_userapi.adapters.sql import Database
from decode_userapi.domain.errors import UserExists
from decode_userapi.ports.users import UserRecord, UserStore

ALICE = UserRecord(
    username="alice@example.org", email="alice@example.org", groups=("users", "admins"), password_hash="h1"
)
BOB = UserRecord(username="bob", email=None, groups=(), password_hash="scrypt$16384$8$1$c2FsdA==$ZGlnZXN0")


@pytest.fixture
async def users(store_database_url: str | None) -> AsyncIterator[UserStore]:
    store = InMemoryUserStore() if store_database_url is None else SqlUserStore(Database(store_database_url))
    await store.start()
    yield store
    await store.aclose()


async def test_add_then_get_round_trips(users: UserStore) -> None:
    await users.add(ALICE)
    await users.add(BOB)
    assert await users.get(ALICE.username) == ALICE
    assert await users.get(BOB.username) == BOB


async def test_get_missing_is_none(users: UserStore) -> None:
    await users.add(ALICE)
    assert await users.get("nobody") is None
    assert await users.get("ALICE@example.org") is None  # usernames are case-sensitive


async def test_a_taken_username_raises_user_exists_and_keeps_the_first(users: UserStore) -> None:
    await users.add(BOB)
    with pytest.raises(UserExists, match="bob"):
        await users.add(UserRecord(username="bob", email="other@example.org", groups=("users",), password_hash="x"))
    assert await users.get("bob") == BOB
