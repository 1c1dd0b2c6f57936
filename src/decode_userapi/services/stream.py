"""Live job events: what `GET /jobs/events/stream` sends, read once per process and user.

Per process, one listener on the `ChangeFeed`; per user with open streams, one reader. On a change
of user U the reader reads U's new events once (`events_since` after the newest it has read), with
each job's current state, encodes each message once, and hands the same bytes to every open stream
of U: a thousand watchers of one user cost one read per change, not a thousand. A user nobody
watches costs nothing; an idle stream costs no database work.

Nothing is missed: a stream starting after `seq` N first reads (N, now] itself, then takes what its
user's reader reads next (duplicates dropped by `(seq, id)`). After a feed outage (`on_reset`)
every reader re-reads from its newest `seq`. A stream that does not keep up (its backlog of
messages fills) is ended rather than allowed to grow: its client resumes with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import builtins
import random
from collections import deque
from collections.abc import Iterable, Sequence

import msgspec
import structlog

from decode_userapi.domain.backoff import backoff_delay
from decode_userapi.domain.events import DELETE, JobEvent
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.jobs import Job
from decode_userapi.domain.stream import StreamEventView, whole_writes
from decode_userapi.ports.feed import ChangeFeed
from decode_userapi.ports.jobs import JobStore

log = structlog.get_logger(__name__)

PAGE = 200  # events read at a time
BACKLOG = 1000  # messages a stream may have waiting before it is ended as too slow
BULK_JOBS = 8  # more jobs than this in one read: their rows come from one listing
LISTED_JOBS = 1000  # ... of the user's newest jobs
_LAST = 2**63  # above every event id

# Why a watch ended (`Watch.ended`).
CLOSING = "closing"  # the service is shutting down: reconnect (to another replica, or later)
BEHIND = "behind"  # the client did not keep up: reconnect with Last-Event-ID


class Delivery(msgspec.Struct, frozen=True, gc=False):
    """One message for every open stream of a user: the event's `seq`, `id` and `kind`, and its
    `StreamEventView` as JSON, encoded once."""

    seq: int
    id: int
    kind: str
    data: bytes


class Watch:
    """One open stream of one user's events: take them with `next()`, end it with `close()`."""

    def __init__(self, service: StreamService, user_id: str, backlog: int) -> None:
        self.user_id = user_id
        self.ended: str | None = None  # why it ended (CLOSING, BEHIND), None while open
        self._service = service
        self._backlog = backlog
        self._last = (0, _LAST)  # the newest (seq, id) handed out, or the start point
        self._catch_up: int | None = None  # read from the store after this seq first, if set
        self._pending: deque[Delivery] = deque()
        self._wake = asyncio.Event()

    @property
    def last_seq(self) -> int:
        """The `seq` of the newest message handed out, or the point the watch started after."""
        return self._last[0]

    def _begin(self, after: int, catch_up: bool) -> None:
        self._last = (after, _LAST)
        self._catch_up = after if catch_up else None

    async def next(self, timeout: float) -> list[Delivery]:
        """The next messages, oldest first: empty after `timeout` seconds without any, or once the
        watch has ended (`ended` says why)."""
        while self.ended is None and self._catch_up is not None:
            deliveries, more = await self._service.read(self.user_id, self._catch_up)
            self._catch_up = deliveries[-1].seq if more and deliveries else None
            fresh = self._take(deliveries)
            if fresh:
                return fresh
        if self.ended is None and not self._pending:
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                return []
        if self.ended is not None:
            return []
        pending, self._pending = self._pending, deque()
        return self._take(pending)

    def _take(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        fresh = [d for d in deliveries if (d.seq, d.id) > self._last]
        if fresh:
            self._last = (fresh[-1].seq, fresh[-1].id)
        return fresh

    def _push(self, deliveries: Sequence[Delivery]) -> bool:
        """Queue messages; False (and the watch ends) if its backlog would overflow."""
        if len(self._pending) + len(deliveries) > self._backlog:
            self._end(BEHIND)
            return False
        self._pending.extend(deliveries)
        self._wake.set()
        return True

    def _end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self._pending.clear()
            self._wake.set()

    def close(self) -> None:
        """Stop watching (idempotent)."""
        self._service.forget(self)


class _Reader:
    """The reader of one user's events for every watch of that user in this process."""

    def __init__(self) -> None:
        self.watches: set[Watch] = set()
        self.cursor = 0  # every event with a larger seq is still to be read and fanned out
        self.ready: asyncio.Task[int] | None = None  # reads the start point: the user's counter
        self.dirty = False
        self.pump: asyncio.Task[None] | None = None


class StreamService:
    """The live streams of this process. `start()` attaches it to the feed; `close()` ends every
    stream (shutdown): from another thread or a signal handler, `close_threadsafe()`."""

    def __init__(
        self,
        store: JobStore,
        feed: ChangeFeed,
        *,
        page: int = PAGE,
        backlog: int = BACKLOG,
        job_views: bool = True,
        retry_cap: float = 5.0,
    ) -> None:
        self._store = store
        self._feed = feed
        self._page = page
        self._backlog = backlog
        self._job_views = job_views
        self._retry_cap = retry_cap
        self._readers: dict[str, _Reader] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._encode = msgspec.json.Encoder().encode

    async def start(self) -> None:
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._feed.listen(self._changed, self._reset)

    @property
    def watching(self) -> int:
        """Open streams in this process."""
        return sum(len(r.watches) for r in self._readers.values())

    async def open(self, principal: Principal, after: int | None) -> Watch:
        """A watch of the caller's events with `seq > after`, or from now on (None). Reads the
        user's counter if no stream of theirs is open here yet, and events before it if `after`
        is older: `StoreUnavailable` if that fails. Ended at once (CLOSING) while shutting down."""
        user_id = principal.user_id
        watch = Watch(self, user_id, self._backlog)
        if self._closed:
            watch._end(CLOSING)
            return watch
        reader = self._readers.get(user_id)
        if reader is None:
            reader = self._readers[user_id] = _Reader()
            reader.ready = asyncio.create_task(self._store.changes(user_id))
        assert reader.ready is not None
        reader.watches.add(watch)  # before the start point is known: nothing fanned out after it is missed
        try:
            start = await asyncio.shield(reader.ready)
            reader.cursor = max(reader.cursor, start)
            if after is not None and after > reader.cursor:
                # Ahead of what this process has read: ids from another database are clamped to now.
                after = min(after, await self._store.changes(user_id))
        except BaseException:
            self.forget(watch)
            raise
        if after is None:
            watch._begin(reader.cursor, catch_up=False)
        else:
            watch._begin(after, catch_up=after < reader.cursor)
        if self._closed:
            watch._end(CLOSING)
        return watch

    def forget(self, watch: Watch) -> None:
        reader = self._readers.get(watch.user_id)
        if reader is None:
            return
        reader.watches.discard(watch)
        if not reader.watches:
            del self._readers[watch.user_id]
            if reader.ready is not None and not reader.ready.done():
                reader.ready.cancel()

    def close(self) -> None:
        """End every stream and refuse new ones until started again."""
        self._closed = True
        for reader in builtins.list(self._readers.values()):
            if reader.pump is not None:
                reader.pump.cancel()  # a read under way, or a retry waiting: nobody to send to now
            for watch in builtins.list(reader.watches):
                watch._end(CLOSING)
                self.forget(watch)

    def close_threadsafe(self) -> None:
        """`close()` from any thread, or from a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.close)

    async def read(self, user_id: str, after: int) -> tuple[builtins.list[Delivery], bool]:
        """The user's messages after `after` (one page of events, cut after a whole write), and
        whether more may follow at once (the page was full)."""
        events = await self._store.events_since(user_id, after, self._page)
        kept = whole_writes(events, self._page)
        jobs = await self._jobs(user_id, kept) if self._job_views else {}
        encode = self._encode
        deliveries = [Delivery(e.seq, e.id, e.kind, encode(StreamEventView.of(e, jobs.get(e.job_id)))) for e in kept]
        return deliveries, len(events) >= self._page

    async def _jobs(self, user_id: str, events: Sequence[JobEvent]) -> dict[int, Job | None]:
        """The current state of each job the events are about, read once each (none for a job whose
        last event here is its deletion). Many jobs at once (a long catch-up) are read with one
        listing of the user's newest jobs first, then one read each for those it did not hold."""
        last_kind = {e.job_id: e.kind for e in events}
        wanted = [job_id for job_id, kind in last_kind.items() if kind != DELETE]
        jobs: dict[int, Job | None] = dict.fromkeys(last_kind)
        if len(wanted) > BULK_JOBS:
            listed = {j.id: j for j in await self._store.list_for_user(user_id, offset=0, limit=LISTED_JOBS)}
            jobs.update((job_id, listed[job_id]) for job_id in wanted if job_id in listed)
            wanted = [job_id for job_id in wanted if job_id not in listed]
        for job_id in wanted:
            job = await self._store.get(job_id)
            jobs[job_id] = job if job is not None and job.user_id == user_id else None
        return jobs

    def _changed(self, user_id: str) -> None:
        reader = self._readers.get(user_id)
        if reader is not None:
            self._wake(user_id, reader)

    def _reset(self) -> None:
        """The feed may have missed changes: every user watched re-reads from where it was."""
        for user_id, reader in builtins.list(self._readers.items()):
            self._wake(user_id, reader)

    def _wake(self, user_id: str, reader: _Reader) -> None:
        reader.dirty = True
        if reader.pump is None or reader.pump.done():
            reader.pump = asyncio.create_task(self._pump(user_id, reader), name=f"stream-reader {user_id}")

    async def _pump(self, user_id: str, reader: _Reader) -> None:
        """Read the user's new events while there may be some, and fan them out."""
        assert reader.ready is not None
        failures = 0
        while reader.dirty and reader.watches and not self._closed:
            reader.dirty = False
            try:
                start = await asyncio.shield(reader.ready)
                reader.cursor = max(reader.cursor, start)
                deliveries, more = await self.read(user_id, reader.cursor)
            except Exception as e:  # noqa: BLE001 - a store that failed now may answer the next attempt
                failures += 1
                delay = backoff_delay(failures, random.random(), base=0.1, cap=self._retry_cap)
                log.warning("stream.read_failed", user_id=user_id, error=str(e) or type(e).__name__, retry_in=round(delay, 3))
                reader.dirty = True
                await asyncio.sleep(delay)
                continue
            failures = 0
            if more:
                reader.dirty = True
            if not deliveries:
                continue
            reader.cursor = deliveries[-1].seq
            for watch in builtins.list(reader.watches):
                if not watch._push(deliveries):
                    log.info("stream.behind", user_id=user_id, backlog=self._backlog)
                    self.forget(watch)
