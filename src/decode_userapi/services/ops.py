"""What operators ask: is the process alive, can it serve, and how much is going on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec

from decode_userapi.domain.errors import DomainError, NotFound
from decode_userapi.domain.files import UserPath
from decode_userapi.ports.catalog import ApplicationCatalogSource
from decode_userapi.ports.clock import Clock
from decode_userapi.ports.jobs import JobStats, JobStore
from decode_userapi.ports.storage import FileStorage
from decode_userapi.ports.workers import WorkerDispatch
from decode_userapi.services.dispatcher import DispatchHealth

# A name no user can have (check_username refuses a leading "."): listing it only proves storage answers.
PROBE_USER = ".readiness-probe"
CHECK_TIMEOUT = 5.0


class DispatchReport(msgspec.Struct, frozen=True):
    """How deliveries to the worker-facing API go: what this replica's attempts met, and the outbox
    every replica shares."""

    backlog: int | None  # jobs not yet delivered (None: the database did not answer)
    oldest_pending_seconds: float | None  # how long the oldest of them has waited, since created
    failing_seconds: float | None  # how long this replica's attempts have failed; None: they succeed
    fault: str | None  # the kind of the last failed attempt


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, str]  # "ok", or what is wrong
    dispatch: DispatchReport


class OpsService:
    def __init__(
        self,
        store: JobStore,
        storage: FileStorage,
        catalog: ApplicationCatalogSource,
        workers: WorkerDispatch,
        dispatch_health: Callable[[], DispatchHealth] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock
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

    def dispatch_report(self, stats: JobStats | None) -> DispatchReport:
        """The dispatcher's recent outcome and the outbox's age, from `stats` (None: not read)."""
        now = self._clock.now() if self._clock else datetime.now(UTC)
        health = self.dispatch_health()
        oldest = None if stats is None or stats.oldest_pending is None else stats.oldest_pending
        return DispatchReport(
            backlog=None if stats is None else stats.dispatch_backlog,
            oldest_pending_seconds=None if oldest is None else _seconds(now - oldest),
            failing_seconds=None if health.failing_since is None else _seconds(now - health.failing_since),
            fault=health.fault,
        )

    async def readiness(self) -> Readiness:
        """Database, storage and application config must answer; the worker-facing API is only
        reported (jobs wait in the outbox while it is away, and taking this replica out of service
        would not bring it back): `misconfigured` while it refuses our key or our URL (no waiting
        cures that), `unreachable` while it does not answer pings, `failing` while it answers pings
        but the deliveries fail (too slow to take a job, or faulty), with for how long and how long
        the oldest undelivered job has waited."""
        stats: list[JobStats] = []

        async def read_stats() -> None:
            stats.append(await self._store.stats())

        database, storage, catalog, workers = await asyncio.gather(
            _check(read_stats()),
            _check(self._storage_answers()),
            _check(self._catalog.current()),
            self._workers.ping(),
        )
        checks = {"database": database, "storage": storage, "application_config": catalog}
        ready = all(value == "ok" for value in checks.values())
        health = self.dispatch_health()
        report = self.dispatch_report(stats[0] if stats else None)
        failing = "" if report.failing_seconds is None else f"; deliveries failing for {report.failing_seconds:.0f} s"
        if report.failing_seconds is not None and report.oldest_pending_seconds is not None:
            failing += f", the oldest undelivered job waiting {report.oldest_pending_seconds:.0f} s"
        if health.misconfigured:
            checks["workerfacing_api"] = f"misconfigured ({health.detail}){failing}; jobs wait"
        elif workers is not None:
            checks["workerfacing_api"] = f"unreachable ({workers}){failing}; jobs wait"
        elif health.fault is not None:
            checks["workerfacing_api"] = f"failing (answers pings, but {health.fault}: {health.detail}){failing}; jobs wait"
        else:
            checks["workerfacing_api"] = "ok"
        return Readiness(ready=ready, checks=checks, dispatch=report)

    async def _storage_answers(self) -> None:
        try:
            await self._storage.list(PROBE_USER, UserPath.root(), recursive=False)
        except NotFound:
            pass  # an answer, which is all we asked for


def _seconds(delta: timedelta) -> float:
    return round(max(delta.total_seconds(), 0.0), 3)


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
