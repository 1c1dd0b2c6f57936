"""Which adapters serve which port, chosen from settings; and the services built on them.

The only module that imports adapters. Providers stay synchronous (Singletons over objects
built synchronously); adapters that hold connections have one `start()`/`aclose()` pair, called by
`start_adapters`/`stop_adapters` from the app's lifespan or the embedding API.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import structlog
from dependency_injector import containers, providers

from decode_userapi.adapters.catalog.yaml_file import YamlFileCatalogSource
from decode_userapi.adapters.clock import FixedClock, SystemClock
from decode_userapi.adapters.email.background import BackgroundEmailSender
from decode_userapi.adapters.email.log import LogEmailSender
from decode_userapi.adapters.email.memory import InMemoryEmailSender
from decode_userapi.adapters.feed.memory import InProcessChangeFeed
from decode_userapi.adapters.feed.postgres import PostgresChangeFeed
from decode_userapi.adapters.identity.builtin import BuiltinIdentityProvider
from decode_userapi.adapters.identity.memory_users import InMemoryUserStore
from decode_userapi.adapters.identity.sql_users import SqlUserStore
from decode_userapi.adapters.jobs.memory import InMemoryJobStore
from decode_userapi.adapters.jobs.sqlalchemy import SqlJobStore
from decode_userapi.adapters.secrets import SecretError as SecretError  # re-exported for the CLI
from decode_userapi.adapters.secrets import resolve_secret
from decode_userapi.adapters.sql import Database
from decode_userapi.adapters.sql import SchemaNotCurrent as SchemaNotCurrent  # re-exported for the CLI
from decode_userapi.adapters.sql import head_revision as head_revision  # re-exported for the CLI
from decode_userapi.adapters.storage.local import LocalFileStorage
from decode_userapi.adapters.storage.memory import InMemoryFileStorage
from decode_userapi.adapters.workers.http import HttpWorkerDispatch
from decode_userapi.adapters.workers.memory import InMemoryWorkerDispatch
from decode_userapi.config import Settings
from decode_userapi.domain.dispatch import RetryPolicy
from decode_userapi.services.dispatcher import Dispatcher
from decode_userapi.services.files import FileService
from decode_userapi.services.jobs import JobService
from decode_userapi.services.ops import OpsService
from decode_userapi.services.stream import StreamService
from decode_userapi.services.users import UserService

log = structlog.get_logger(__name__)



def _lazy(module: str, name: str) -> Callable[..., Any]:
    """Build `module.name` when first needed: the AWS and Mailjet adapters pull in aioboto3 and
    requests, about 0.4 s of a start-up (measured) that a local deployment never uses."""

    def build(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"decode_userapi.adapters.{module}"), name)(*args, **kwargs)

    build.__name__ = name
    return build


S3CatalogSource = _lazy("catalog.s3", "S3CatalogSource")
S3FileStorage = _lazy("storage.s3", "S3FileStorage")
CognitoIdentityProvider = _lazy("identity.cognito", "CognitoIdentityProvider")
MailjetEmailSender = _lazy("email.mailjet", "MailjetEmailSender")

# Adapters with a start()/aclose() pair, in start order (closed in reverse).
LIFECYCLE = ("job_store", "change_feed", "user_store", "file_storage", "identity", "catalog", "worker_dispatch", "email_sender")


def _signing_key(settings: Settings) -> bytes | None:
    return settings.token_signing_key.encode() if settings.token_signing_key else None


def _catalog_source(settings: Settings) -> str:
    return "s3" if settings.application_config_file.startswith("s3://") else "file"


def _database_url(settings: Settings) -> str:
    return settings.database_url.replace("{}", settings.database_secret or "")


def _notify(feed: Any) -> Callable[[str], None] | None:
    """What the job store calls after committing events: the in-process feed's `notify`; nothing on
    PostgreSQL, where the database notifies every replica itself."""
    return getattr(feed, "notify", None)


def _event_retention(settings: Settings) -> float | None:
    """Seconds job events are kept; None: forever."""
    return settings.job_event_retention_days * 86400.0 or None


def _key_file(settings: Settings) -> str:
    return str(Path(settings.data_dir) / "signing.key")


class Adapters(containers.DeclarativeContainer):
    """Real adapters, chosen by settings."""

    settings = providers.Dependency(instance_of=Settings)
    clock = providers.Singleton(SystemClock)
    database = providers.Singleton(
        Database,
        url=providers.Callable(_database_url, settings),
        pool_size=settings.provided.database_pool_size,
        pool_timeout=settings.provided.database_pool_timeout,
        migrate_on_start=settings.provided.database_migrate_on_start,
    )
    # Live job events: LISTEN/NOTIFY on PostgreSQL (every replica hears every write), else in-process.
    change_feed = providers.Selector(
        providers.Callable(lambda db: db.backend, database),
        postgresql=providers.Singleton(PostgresChangeFeed, url=database.provided.url),
        sqlite=providers.Singleton(InProcessChangeFeed),
    )
    job_store = providers.Singleton(
        SqlJobStore,
        database=database,
        on_change=providers.Callable(_notify, change_feed),
        event_retention=providers.Callable(_event_retention, settings),
    )
    user_store = providers.Singleton(SqlUserStore, database=database)
    file_storage = providers.Selector(
        settings.provided.filesystem,
        local=providers.Singleton(LocalFileStorage, root=settings.provided.user_data_root_path),
        s3=providers.Singleton(
            S3FileStorage,
            bucket=settings.provided.s3_bucket,
            root=settings.provided.user_data_root_path,
            region=settings.provided.s3_region,
            max_upload_bytes=settings.provided.max_upload_bytes,
        ),
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
        cognito=providers.Singleton(
            CognitoIdentityProvider,
            user_pool_id=settings.provided.cognito_user_pool_id,
            client_id=settings.provided.cognito_client_id,
            region=settings.provided.cognito_region,
            client_secret=settings.provided.cognito_secret,
            jwks_url=settings.provided.cognito_jwks_url,
        ),
    )
    # The accounts this service keeps itself: the built-in identity's; Cognito keeps its own.
    accounts = providers.Selector(settings.provided.identity, builtin=user_store, cognito=providers.Object(None))
    catalog = providers.Selector(
        providers.Callable(_catalog_source, settings),
        file=providers.Singleton(YamlFileCatalogSource, path=settings.provided.application_config_file),
        s3=providers.Singleton(
            S3CatalogSource, uri=settings.provided.application_config_file, region=settings.provided.s3_region
        ),
    )
    worker_dispatch = providers.Singleton(
        HttpWorkerDispatch,
        base_url=settings.provided.workerfacing_api_url,
        api_key=settings.provided.internal_api_key,
        timeout=settings.provided.workerfacing_api_timeout_seconds,
    )
    email_sender = providers.Singleton(
        BackgroundEmailSender,
        sender=providers.Selector(
            providers.Callable(lambda s: s.email_sender_service or "log", settings),
            log=providers.Singleton(LogEmailSender),
            mailjet=providers.Singleton(
                MailjetEmailSender,
                api_key=settings.provided.email_sender_api_key,
                api_secret=settings.provided.email_sender_secret_key,
                sender=settings.provided.email_sender_address,
            ),
        ),
    )


class InMemoryAdapters(containers.DeclarativeContainer):
    """Every port in memory: unit tests and embedding. Same provider names as `Adapters`."""

    settings = providers.Dependency(instance_of=Settings)
    clock = providers.Singleton(FixedClock, start=datetime(2026, 1, 1, tzinfo=UTC))
    change_feed = providers.Singleton(InProcessChangeFeed)
    job_store = providers.Singleton(InMemoryJobStore, clock=clock, on_change=change_feed.provided.notify)
    user_store = providers.Singleton(InMemoryUserStore)
    file_storage = providers.Singleton(InMemoryFileStorage)
    identity = providers.Singleton(
        BuiltinIdentityProvider, users=user_store, signing_key=b"in-memory-signing-key-0123456789abcdef"
    )
    accounts = user_store
    catalog = providers.Selector(
        providers.Callable(_catalog_source, settings),
        file=providers.Singleton(YamlFileCatalogSource, path=settings.provided.application_config_file),
        s3=providers.Singleton(
            S3CatalogSource, uri=settings.provided.application_config_file, region=settings.provided.s3_region
        ),
    )
    worker_dispatch = providers.Singleton(InMemoryWorkerDispatch)
    email_outbox = providers.Singleton(InMemoryEmailSender)
    email_sender = providers.Singleton(BackgroundEmailSender, sender=email_outbox)


def _retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_delay=settings.dispatch_max_delay_seconds, give_up_after=settings.dispatch_give_up_seconds)


class Services(containers.DeclarativeContainer):
    """The use cases, over whichever adapters were given: one of each per container (they keep no
    per-request state, and a factory would resolve a dozen providers on every request)."""

    settings = providers.Dependency(instance_of=Settings)
    adapters = providers.DependenciesContainer()
    background_dispatch = providers.Object(True)
    dispatcher = providers.Singleton(
        Dispatcher,
        store=adapters.job_store,
        workers=adapters.worker_dispatch,
        clock=adapters.clock,
        email=adapters.email_sender,
        policy=providers.Callable(_retry_policy, settings),
        lease=settings.provided.dispatch_lease_seconds,
        attempt_timeout=settings.provided.workerfacing_api_timeout_seconds,
        run_in_background=background_dispatch,
    )
    jobs = providers.Singleton(
        JobService,
        store=adapters.job_store,
        storage=adapters.file_storage,
        catalog=adapters.catalog,
        email=adapters.email_sender,
        clock=adapters.clock,
        dispatch_now=dispatcher.provided.wake,
    )
    files = providers.Singleton(
        FileService,
        storage=adapters.file_storage,
        quota_bytes=settings.provided.user_quota_bytes,
        max_listing_entries=settings.provided.max_listing_entries,
    )
    ops = providers.Singleton(
        OpsService,
        store=adapters.job_store,
        storage=adapters.file_storage,
        catalog=adapters.catalog,
        workers=adapters.worker_dispatch,
        dispatch_health=dispatcher.provided.health,
        clock=adapters.clock,
    )
    users = providers.Singleton(UserService, identity=adapters.identity, accounts=adapters.accounts)
    stream = providers.Singleton(StreamService, store=adapters.job_store, feed=adapters.change_feed)


def resolve_secrets(settings: Settings) -> Settings:
    """Settings with every secret resolved: plain values, Secrets Manager JSON, or fetched ARNs."""
    resolved = {name: resolve_secret(getattr(settings, name)) for name in settings.secret_fields}
    return msgspec.structs.replace(settings, **resolved)


def build_adapters(settings: Settings) -> Adapters:
    """The real adapters chosen by `settings` (secrets resolved here, once), none started yet."""
    return Adapters(settings=resolve_secrets(settings))


def build_services(settings: Settings) -> Services:
    """Production wiring: the use cases over `build_adapters(settings)`."""
    adapters = build_adapters(settings)
    return Services(settings=adapters.settings(), adapters=adapters)


def in_memory_services(settings: Settings | None = None, *, background_dispatch: bool = True) -> Services:
    """Every adapter in memory. Without `background_dispatch`, call `dispatcher().run_once()` yourself."""
    settings = settings or Settings()
    services = Services(settings=settings, adapters=InMemoryAdapters(settings=settings))
    services.background_dispatch.override(background_dispatch)
    return services


def _lifecycle(adapters: Any) -> list[Any]:
    seen: list[Any] = []
    for name in LIFECYCLE:
        adapter = getattr(adapters, name)()
        if not any(adapter is s for s in seen):
            seen.append(adapter)
    return seen


async def start_services(services: Services) -> None:
    """Start the adapters, the live streams' listener, then the dispatcher that delivers recorded jobs."""
    await start_adapters(services.adapters)
    try:
        await services.stream().start()
        await services.dispatcher().start()
    except BaseException:
        await _close_all(reversed(_lifecycle(services.adapters)))  # failures logged; the start's is raised
        raise


async def stop_services(services: Services) -> None:
    """End the live streams, stop the dispatcher (after the deliveries under way), then close every
    adapter, even when something before failed to close; the first failure is raised once
    everything was tried."""
    failures: list[Exception] = []
    try:
        services.stream().close()
    except Exception as e:
        log.exception("service.close_failed", part="stream")
        failures.append(e)
    try:
        await services.dispatcher().aclose()
    except Exception as e:
        log.exception("service.close_failed", part="dispatcher")
        failures.append(e)
    try:
        await stop_adapters(services.adapters)
    except Exception as e:  # noqa: BLE001 - each one logged already
        failures.append(e)
    if failures:
        raise failures[0]


async def start_adapters(adapters: Any) -> None:
    started: list[Any] = []
    try:
        for adapter in _lifecycle(adapters):
            await adapter.start()
            started.append(adapter)
    except BaseException:
        await _close_all(reversed(started))
        raise


async def stop_adapters(adapters: Any) -> None:
    """Close every adapter, in reverse start order. One that fails to close is logged and the rest
    are still closed (a database pool left open holds connections on the server); then the first
    failure is raised, so whoever shuts down knows that it was not clean."""
    failures = await _close_all(reversed(_lifecycle(adapters)))
    if failures:
        raise failures[0]


async def _close_all(adapters: Iterable[Any]) -> list[Exception]:
    failures: list[Exception] = []
    for adapter in adapters:
        try:
            await adapter.aclose()
        except Exception as e:
            log.exception("adapter.close_failed", adapter=type(adapter).__name__)
            failures.append(e)
    return failures
