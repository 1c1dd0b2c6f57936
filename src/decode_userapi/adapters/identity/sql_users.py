"""The UserStore over SQLite or PostgreSQL: the `users` table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select, update

from decode_userapi.adapters.sql import Database, execute, users_table
from decode_userapi.domain.errors import UnknownUser, UserExists
from decode_userapi.ports.users import UserRecord


class SqlUserStore:
    """Users in the `users` table of `database` (which other stores may share)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def add(self, record: UserRecord) -> None:
        values = {
            "username": record.username,
            "email": record.email,
            "groups": list(record.groups),
            "password_hash": record.password_hash,
        }
        statement = self._database.insert_or_ignore(users_table, values, "username")
        async with self._database.transaction() as connection:
            inserted = await execute(connection, statement.returning(users_table.c.username))
            if inserted.scalar_one_or_none() is None:
                raise UserExists(f"user {record.username!r} already exists")

    async def get(self, username: str) -> UserRecord | None:
        statement = select(users_table).where(users_table.c.username == username)
        async with self._database.transaction() as connection:
            row = (await execute(connection, statement)).one_or_none()
        return None if row is None else _record(row)

    async def list(self) -> list[UserRecord]:
        statement = select(users_table).order_by(users_table.c.username)
        async with self._database.transaction() as connection:
            return [_record(row) for row in await execute(connection, statement)]

    async def set_groups(self, username: str, groups: tuple[str, ...]) -> UserRecord:
        statement = (
            update(users_table)
            .where(users_table.c.username == username)
            .values(groups=list(groups))
            .returning(*users_table.c)
        )
        async with self._database.transaction() as connection:
            row = (await execute(connection, statement)).one_or_none()
        if row is None:
            raise UnknownUser(f"user {username!r} not found")
        return _record(row)

    async def start(self) -> None:
        await self._database.start()

    async def aclose(self) -> None:
        await self._database.aclose()


def _record(row: Row[Any]) -> UserRecord:
    return UserRecord(username=row.username, email=row.email, groups=tuple(row.groups), password_hash=row.password_hash)
