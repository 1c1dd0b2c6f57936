"""Which adapters serve which port, chosen from settings; and the services built on them.

The only module that imports adapters. Providers stay synchronous (Singletons over objects
built synchronously); adapters that hold connections have one `start()`/`aclose()` pair, called by
`start_adapters`/`stop_adapters` from the app's lifespan or the embedding API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dependency_injector import containers, providers

from decode_userapi.adapters.catalog.memory import InMemoryCatalogSource
from decode_userapi.adapters.catalog.yaml_file import YamlFileCatalogSource
from decode_userapi.adapters.clock import FixedClock, SystemClock
from decode_userapi.adapters.email.background import BackgroundEmailSender
from decode_userapi.adapters.email.log import LogEmailSender
from decode_userapi.adapters.email.memory import InMemoryEmailSender
from decode_userapi.adapters.identity.builtin import BuiltinIdentityProvider
from decode_userapi.adapters.identity.memory_users import InMemoryUserStore
from decode_userapi.adapters.identity.sql_users import SqlUserStore
from decode_userapi.adapters.jobs.memory import InMemoryJobStore
from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.sql import Database
from decode_userapi.adapters.storage.local import LocalFileStorage
from decode_userapi.adapters.storage.memory import InMemoryFileStorage
from decode_userapi.adapters.workers.http import HttpWorkerDispatch
from decode_userapi.adapters.workers.memory import InMemoryWorkerDispatch
from decode_userapi.config import Settings, SettingsError
from decode_userapi.services.files import FileService
from decode_userapi.services.jobs import JobService

# Adapters with a start()/aclose() pair, in start order (closed in reverse).
LIFECYCLE = ("job_store", "user_store", "file_storage", "identity", "catalog", "worker_dispatch", "email_sender")


def _signing_key(settings: Settings) -> bytes | None:
    return settings.token_signing_key.encode() if settings.token_signing_key else None


def _key_file(settings: Settings) -> str:
    return str(Path(settings.data_dir) / "signing.key")


class Adapters(containers.DeclarativeContainer):
    """Real adapters, chosen by settings."""

    settings = providers.Dependency(instance_of=Settings)
    clock = providers.Singleton(SystemClock)
    database = providers.Singleton(
        Database, url=settings.provided.database_url, pool_size=settings.provided.database_pool_size
    )
    job_store = providers.Singleton(SqlJobStore, database=database)
    user_store = providers.Singleton(SqlUserStore, database=database)
    file_storage = providers.Selector(
        settings.provided.filesystem,
        local=providers.Singleton(LocalFileStorage, root=settings.provided.user_data_root_path),
    )
    identity = providers.Selector(
        settings.provided.identity,
        builtin=providers.Singleton(
            BuiltinIdentityProvider,
            users=user_store,
            signing_key=providers.Callable(_signing_key, settings),
            key_file=providers.Callable(_key_file, settings),
            token_ttl=settings.provided.token_ttl_seconds,
        ),
    )
    catalog = providers.Singleton(YamlFileCatalogSource, path=settings.provided.application_config_file)
    worker_dispatch = providers.Singleton(
        HttpWorkerDispatch,
        base_url=settings.provided.workerfacing_api_url,
        api_key=settings.provided.internal_api_key,
    )
    email_sender = providers.Singleton(BackgroundEmailSender, sender=providers.Singleton(LogEmailSender))


class InMemoryAdapters(containers.DeclarativeContainer):
    """Every port in memory: unit tests and embedding. Same provider names as `Adapters`."""

    settings = providers.Dependency(instance_of=Settings)
    clock = providers.Singleton(FixedClock, start=datetime(2026, 1, 1, tzinfo=UTC))
    job_store = providers.Singleton(InMemoryJobStore)
    user_store = providers.Singleton(InMemoryUserStore)
    file_storage = providers.Singleton(InMemoryFileStorage)
    identity = providers.Singleton(
        BuiltinIdentityProvider, users=user_store, signing_key=b"in-memory-signing-key-0123456789abcdef"
    )
    catalog = providers.Singleton(YamlFileCatalogSource, path=settings.provided.application_config_file)
    worker_dispatch = providers.Singleton(InMemoryWorkerDispatch)
    email_outbox = providers.Singleton(InMemoryEmailSender)
    email_sender = providers.Singleton(BackgroundEmailSender, sender=email_outbox)


class Services(containers.DeclarativeContainer):
    """The use cases, over whichever adapters were given."""

    settings = providers.Dependency(instance_of=Settings)
    adapters = providers.DependenciesContainer()
    jobs = providers.Factory(
        JobService,
        store=adapters.job_store,
        storage=adapters.file_storage,
        catalog=adapters.catalog,
        workers=adapters.worker_dispatch,
        email=adapters.email_sender,
        clock=adapters.clock,
    )
    files = providers.Factory(FileService, storage=adapters.file_storage)


def build_services(settings: Settings) -> Services:
    """Production wiring: real adapters chosen by `settings`."""
    if settings.filesystem != "local":
        raise SettingsError("FILESYSTEM=s3 is not available in this version yet")
    if settings.identity != "builtin":
        raise SettingsError("Cognito identity is not available in this version yet")
    return Services(settings=settings, adapters=Adapters(settings=settings))


def in_memory_services(settings: Settings | None = None) -> Services:
    settings = settings or Settings()
    return Services(settings=settings, adapters=InMemoryAdapters(settings=settings))


def _lifecycle(adapters: Any) -> list[Any]:
    seen: list[Any] = []
    for name in LIFECYCLE:
        adapter = getattr(adapters, name)()
        if not any(adapter is s for s in seen):
            seen.append(adapter)
    return seen


async def start_adapters(adapters: Any) -> None:
    started: list[Any] = []
    try:
        for adapter in _lifecycle(adapters):
            await adapter.start()
            started.append(adapter)
    except BaseException:
        for adapter in reversed(started):
            await adapter.aclose()
        raise


async def stop_adapters(adapters: Any) -> None:
    for adapter in reversed(_lifecycle(adapters)):
        await adapter.aclose()
