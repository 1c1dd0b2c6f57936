"""The cache of verified ID tokens: a hit until the token's `exp`, bounded in size."""

from __future__ import annotations

import time

from decode_userapi.adapters.identity.claims import VerifiedTokens
from decode_userapi.domain.identity import Principal

ALICE = Principal("alice", None, ("users",))


def test_a_verified_token_is_remembered_until_it_expires() -> None:
    tokens = VerifiedTokens()
    assert tokens.put("t", ALICE, {"exp": time.time() + 60}) is ALICE
    assert tokens.get("t") is ALICE
    assert tokens.get("other") is None
    tokens.put("old", ALICE, {"exp": time.time() - 1})
    assert tokens.get("old") is None


def test_a_token_without_exp_is_not_remembered() -> None:
    tokens = VerifiedTokens()
    tokens.put("t", ALICE, {})
    assert tokens.get("t") is None


def test_the_oldest_entries_make_room() -> None:
    tokens = VerifiedTokens(size=2)
    later = time.time() + 60
    for name in ("a", "b", "c"):
        tokens.put(name, ALICE, {"exp": later})
    assert [tokens.get(n) for n in ("a", "b", "c")] == [None, ALICE, ALICE]
