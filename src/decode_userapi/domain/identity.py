"""Who is calling."""

from __future__ import annotations

import msgspec

from decode_userapi.domain.errors import Forbidden

USERS_GROUP = "users"


class Principal(msgspec.Struct, frozen=True):
    """An authenticated caller. `user_id` is the username, which also names the user's file tree."""

    user_id: str
    email: str | None
    groups: tuple[str, ...] = ()

    def require_group(self, group: str = USERS_GROUP) -> Principal:
        if group not in self.groups:
            raise Forbidden(f"this needs membership of the {group!r} group")
        return self
