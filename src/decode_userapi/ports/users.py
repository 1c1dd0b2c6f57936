from __future__ import annotations

from typing import Protocol

import msgspec


class UserRecord(msgspec.Struct, frozen=True):
    """An account of the built-in identity provider."""

    username: str
    email: str | None
    groups: tuple[str, ...]
    password_hash: str


class UserStore(Protocol):
    """Accounts of the built-in identity provider."""

    async def add(self, record: UserRecord) -> None:
        """Record a new user; `UserExists` if the username is taken."""
        ...

    async def get(self, username: str) -> UserRecord | None: ...

    async def list(self) -> list[UserRecord]:
        """Every user, by username."""
        ...

    async def set_groups(self, username: str, groups: tuple[str, ...]) -> UserRecord:
        """Replace the user's groups; `UnknownUser` if there is no such user."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
