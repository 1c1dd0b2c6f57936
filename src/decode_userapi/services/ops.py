"""What operators ask: is the process alive, can it serve, and how much is going on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from decode_userapi.domain.errors import DomainError, NotFound
from decode_userapi.domain.files import UserPath
from decode_userapi.ports.catalog import ApplicationCatalogSource
from decode_userapi.ports.jobs import JobStats, JobStore
from decode_userapi.ports.storage import FileStorage
from decode_userapi.ports.workers import WorkerDispatch
from decode_userapi.services.dispatcher import DispatchHealth

# A name no user can have (check_username refuses a leading "."): listing it only proves storage answers.
PROBE_USER = ".readiness-probe"
CHECK_TIMEOUT = 5.0


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, str]  # "ok", or what is wrong


class OpsService:
    def __init__(
        self,
        store: JobStore,
        storage: FileStorage,
        catalog: ApplicationCatalogSource,
        workers: WorkerDispatch,
        dispatch_health: Callable[[], DispatchHealth] | None = None,
    ) -> None:
        self._store = store
        self._storage = storage
        self._catalog = catalog
        self._workers = workers
        self._dispatch_health = dispatch_health

    async def stats(self) -> JobStats:
        return await self._store.stats()

    def dispatch_health(self) -> DispatchHealth:
        """What the dispatcher knows of the worker-facing API: its current fault, failures by kind."""
        return self._dispatch_health() if self._dispatch_health else DispatchHealth(None, None, {})

    async def readiness(self) -> Readiness:
        """Database, storage and application config must answer; the worker-facing API is only
        reported (jobs wait in the outbox while it is away), as `misconfigured` while it refuses our key
        or our URL: no waiting cures that."""
        database, storage, catalog, workers = await asyncio.gather(
            _check(self._store.stats()),
            _check(self._storage_answers()),
            _check(self._catalog.current()),
            self._workers.ping(),
        )
        checks = {"database": database, "storage": storage, "application_config": catalog}
        ready = all(value == "ok" for value in checks.values())
        health = self.dispatch_health()
        if health.misconfigured:
            checks["workerfacing_api"] = f"misconfigured ({health.detail}); jobs wait"
        else:
            checks["workerfacing_api"] = "ok" if workers is None else f"unreachable ({workers}); jobs wait"
        return Readiness(ready=ready, checks=checks)

    async def _storage_answers(self) -> None:
        try:
            await self._storage.list(PROBE_USER, UserPath.root(), recursive=False)
        except NotFound:
            pass  # an answer, which is all we asked for


async def _check(awaitable: object) -> str:
    try:
        await asyncio.wait_for(awaitable, CHECK_TIMEOUT)  # type: ignore[arg-type]
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:.0f} s"
    except DomainError as e:
        return e.detail
    except Exception as e:  # noqa: BLE001 - a probe reports, it never crashes
        return f"{type(e).__name__}: {e}"
    return "ok"
