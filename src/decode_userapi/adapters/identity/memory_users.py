"""An in-memory UserStore."""

from __future__ import annotations

from decode_userapi.domain.errors import UserExists
from decode_userapi.ports.users import UserRecord


class InMemoryUserStore:
    """Users in a dict. Records are frozen, so they are shared, not copied."""

    def __init__(self) -> None:
        self._users: dict[str, UserRecord] = {}

    async def add(self, record: UserRecord) -> None:
        if record.username in self._users:
            raise UserExists(f"user {record.username!r} already exists")
        self._users[record.username] = record

    async def get(self, username: str) -> UserRecord | None:
        return self._users.get(username)

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
