"""An in-memory UserStore."""

from __future__ import annotations

import msgspec

from decode_userapi.domain.errors import UnknownUser, UserExists
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

    async def list(self) -> list[UserRecord]:
        return [self._users[name] for name in sorted(self._users)]

    async def set_groups(self, username: str, groups: tuple[str, ...]) -> UserRecord:
        record = self._users.get(username)
        if record is None:
            raise UnknownUser(f"user {username!r} not found")
        self._users[username] = record = msgspec.structs.replace(record, groups=groups)
        return record

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
