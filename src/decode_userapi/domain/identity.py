"""Who is calling, and what an account may be called."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from decode_userapi.domain.errors import Forbidden, InvalidPath, InvalidRequest
from decode_userapi.domain.files import check_username

USERS_GROUP = "users"
GROUP_MAX = 128


class Principal(msgspec.Struct, frozen=True):
    """An authenticated caller. `user_id` is the username, which also names the user's file tree."""

    user_id: str
    email: str | None
    groups: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        """What clients show as the caller's email: the identity's email, else the username."""
        return self.email or self.user_id

    def require_group(self, group: str = USERS_GROUP) -> Principal:
        if group not in self.groups:
            raise Forbidden(f"this needs membership of the {group!r} group")
        return self


def check_new_username(username: str) -> str:
    """A name for a new account: a usable username (`check_username`) that does not begin with `.`
    (it names the user's folder, and hidden folders are easy to miss and to match by accident)."""
    try:
        check_username(username)
    except InvalidPath as e:
        raise InvalidRequest(e.detail) from e
    if username.startswith("."):
        raise InvalidRequest("a username cannot begin with '.'")
    return username


def check_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """Group names, each 1 to `GROUP_MAX` printable characters, without repeats, in the order given."""
    unique = tuple(dict.fromkeys(groups))
    for group in unique:
        if not isinstance(group, str) or not 1 <= len(group) <= GROUP_MAX or not group.isprintable():
            raise InvalidRequest(f"groups: each group name is 1 to {GROUP_MAX} printable characters")
    return unique
