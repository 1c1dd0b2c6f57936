"""The UserStore over SQLite or PostgreSQL: the `users` table."""

from __future__ import annotations

from sqlalchemy import select

from decode_userapi.adapters.sql import Database, execute, users_table
from decode_userapi.domain.errors import UserExists
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
        if row is None:
            return None
        return UserRecord(
            username=row.username, email=row.email, groups=tuple(row.groups), password_hash=row.password_hash
        )

    async def start(self) -> None:
        await self._database.start()

    async def aclose(self) -> None:
        await self._database.aclose()
