"""The in-process Python API: the same use cases as the HTTP API, as plain async calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from decode_userapi.config import Settings
from decode_userapi.container import Services, build_services, in_memory_services, start_services, stop_services
from decode_userapi.domain.identity import Principal
from decode_userapi.services.files import FileService
from decode_userapi.services.jobs import JobService
from decode_userapi.services.users import UserService


class UserApi:
    """Files, jobs and accounts without HTTP.

    >>> async with UserApi.embedded("./my-lab") as api:          # doctest: +SKIP
    ...     alice = await api.register("alice@example.org", "correct horse 1")
    ...     await api.files.list(alice, UserPath.root())
    ...     running = await api.jobs.page(alice, filter=JobFilter(statuses=(JobStatus.running,)))
    ...     running.total, running.jobs

    `jobs.list` and `jobs.page` take the same `JobFilter` as `GET /jobs` (statuses, a name prefix,
    the application, creation-time bounds); `page` also counts the matching jobs.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings: Settings = services.settings()
        self.jobs: JobService = services.jobs()
        self.files: FileService = services.files()
        self.users: UserService = services.users()

    async def register(self, username: str, password: str, groups: list[str] | None = None) -> Principal:
        """Create an account (in the `users` group unless `groups` are given) and return its principal."""
        return await self.users.register(username, password, groups)

    async def login(self, username: str, password: str) -> Principal:
        """The principal of an existing account, checked by password."""
        return await self.users.sign_in(username, password)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, *, dispatch: bool = True) -> AsyncIterator[UserApi]:
        """Real adapters chosen by `settings`, started now and closed on exit. Without `dispatch`,
        recorded jobs are left for a running service to deliver (for one-off commands)."""
        services = build_services(settings)
        services.background_dispatch.override(dispatch)
        async with cls._running(services) as api:
            yield api

    @classmethod
    @asynccontextmanager
    async def embedded(cls, data_dir: str | Path, **overrides: object) -> AsyncIterator[UserApi]:
        """The embedded default in `data_dir`: SQLite, local files, built-in identity."""
        root = Path(data_dir)
        settings = Settings(
            data_dir=str(root),
            user_data_root_path=str(root / "user_data"),
            database_url=f"sqlite:///{root / 'userapi.db'}",
            **overrides,  # type: ignore[arg-type]
        )
        async with cls.open(settings) as api:
            yield api

    @classmethod
    @asynccontextmanager
    async def in_memory(cls, settings: Settings | None = None) -> AsyncIterator[UserApi]:
        """Every adapter in memory: for notebooks and other projects' tests."""
        async with cls._running(in_memory_services(settings)) as api:
            yield api

    @classmethod
    @asynccontextmanager
    async def _running(cls, services: Services) -> AsyncIterator[UserApi]:
        await start_services(services)
        try:
            yield cls(services)
        finally:
            await stop_services(services)
