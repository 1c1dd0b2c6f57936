"""UserService over in-memory adapters: the accounts use case the HTTP API, the CLI and `UserApi` share."""

from __future__ import annotations

import pytest

from decode_userapi.container import in_memory_services
from decode_userapi.domain.errors import InvalidRequest, NotAllowed, Unauthenticated, UnknownUser, UserExists
from decode_userapi.domain.identity import Principal
from decode_userapi.services.users import UserService

PASSWORD = "correct-horse-1"


@pytest.fixture
def users() -> UserService:
    return in_memory_services().users()


async def test_register_sign_in_and_tokens(users):
    ada = await users.register("ada@example.org", PASSWORD)
    assert ada == Principal(user_id="ada@example.org", email="ada@example.org", groups=("users",))
    token = await users.issue_token("ada@example.org", PASSWORD)
    assert token.expires_in > 0
    assert await users.authenticate(token.id_token) == ada
    assert await users.sign_in("ada@example.org", PASSWORD) == ada
    with pytest.raises(UserExists):
        await users.register("ada@example.org", PASSWORD)
    with pytest.raises(Unauthenticated):
        await users.authenticate("not-a-token")


async def test_a_login_name_has_its_username_as_address(users):
    bob = await users.register("bob", PASSWORD, ["users", "admins", "users"])
    assert bob.email is None and bob.address == "bob" and bob.groups == ("users", "admins")


@pytest.mark.parametrize("name", [".hidden", ".", "..", ".bob@example.org", "a/b", ""])
async def test_unusable_usernames_are_refused(users, name):
    with pytest.raises(InvalidRequest):
        await users.register(name, PASSWORD)
    assert await users.list() == []


async def test_bad_group_names_are_refused(users):
    for groups in ([""], ["x" * 129], ["tab\tbed"]):
        with pytest.raises(InvalidRequest, match="groups"):
            await users.register("carol", PASSWORD, groups)
    assert await users.list() == []


async def test_list_and_add_groups(users):
    await users.register("zed", PASSWORD)
    await users.register("amy@example.org", PASSWORD)
    assert [p.user_id for p in await users.list()] == ["amy@example.org", "zed"]
    zed = await users.add_groups("zed", ["lab1", "users"])
    assert zed.groups == ("users", "lab1")
    assert (await users.sign_in("zed", PASSWORD)).groups == ("users", "lab1")
    with pytest.raises(UnknownUser):
        await users.add_groups("nobody", ["x"])


async def test_without_local_accounts_listing_is_not_offered():
    services = in_memory_services()
    users = UserService(services.adapters.identity(), accounts=None)
    with pytest.raises(NotAllowed):
        await users.list()
    with pytest.raises(NotAllowed):
        await users.add_groups("x", ["y"])
