"""`GET /jobs/events/stream`: the caller's job events as they happen, as Server-Sent Events.

Each message is `id: <seq>` (on the last message of each write: a client that reconnects with it
misses nothing, and sees again at most the write it was cut off in), `event: <kind>` and
`data: <StreamEventView as JSON>`. `Last-Event-ID` (what EventSource sends when it reconnects), or
the `last_event_id` query parameter, resumes after that `seq`; without either the stream starts now.
The stream opens with `retry:` (how long EventSource waits before reconnecting) and sends a comment
line every `keep_alive` seconds when quiet, so proxies keep it open (no database work).

The stream ends (the client reconnects and resumes) when the server shuts down, or when the client
does not keep up. When the caller's token expires, an `expired` event (`data: {"detail": ...}`) is
sent, then the stream ends: reconnecting needs a fresh token (a browser: `POST /login` again).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from decode_userapi.domain.errors import DependencyUnavailable, Unauthenticated
from decode_userapi.domain.identity import Principal
from decode_userapi.domain.stream import resume_point
from decode_userapi.entrypoints.http.deps import bearer_token
from decode_userapi.entrypoints.http.errors import error_responses
from decode_userapi.entrypoints.http.guards import users_only
from decode_userapi.services.stream import Delivery, StreamService, Watch
from decode_userapi.services.users import UserService

log = structlog.get_logger(__name__)

EVENT_STREAM = "text/event-stream"
RETRY_MILLISECONDS = 2000
# No proxy buffering (nginx); caching is off already (`Cache-Control: no-store` on every API answer).
HEADERS = {"X-Accel-Buffering": "no"}
KEEP_ALIVE = b": keep-alive\n\n"


def frames(batch: list[Delivery]) -> bytes:
    """The SSE messages of a batch; `id:` only on the last message of each write (its `seq`), so a
    connection cut within a write resumes before that write rather than after it."""
    parts: list[bytes] = []
    for i, d in enumerate(batch):
        last_of_write = i + 1 == len(batch) or batch[i + 1].seq != d.seq
        head = b"id: %d\nevent: %s\ndata: " % (d.seq, d.kind.encode()) if last_of_write else b"event: %s\ndata: " % d.kind.encode()
        parts += (head, d.data, b"\n\n")
    return b"".join(parts)


def _expired(detail: str) -> bytes:
    return b"event: expired\ndata: " + msgspec.json.encode({"detail": detail}) + b"\n\n"


async def event_stream(watch: Watch, users: UserService, token: str, keep_alive: float) -> AsyncIterator[bytes]:
    try:
        yield b"retry: %d\n\n" % RETRY_MILLISECONDS  # also sends the headers at once
        checked = time.monotonic()
        while True:
            try:
                batch = await watch.next(keep_alive)
            except DependencyUnavailable as e:  # a catch-up read failed: the client reconnects and resumes
                log.warning("stream.read_failed", user_id=watch.user_id, error=str(e))
                return
            if batch:
                yield frames(batch)
            elif watch.ended is not None:
                return
            if time.monotonic() - checked >= keep_alive:
                checked = time.monotonic()
                try:
                    await users.authenticate(token)  # remembered until it expires: no signature check, no I/O
                except Unauthenticated as e:
                    yield _expired(e.detail)
                    return
                except DependencyUnavailable:
                    pass  # the identity provider cannot tell now: the token was valid, keep going
                if not batch:
                    yield KEEP_ALIVE
    finally:
        watch.close()


def watched_stream(watch: Watch, users: UserService, token: str, keep_alive: float) -> AsyncIterator[bytes]:
    """`event_stream`, whose watch is also closed if the stream is dropped without ever being read
    (a client gone before the first byte: the generator never starts, so its `finally` never runs)."""
    messages = event_stream(watch, users, token, keep_alive)
    weakref.finalize(messages, _close_soon, asyncio.get_running_loop(), watch)
    return messages


def _close_soon(loop: asyncio.AbstractEventLoop, watch: Watch) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: so is everything it served
        loop.call_soon_threadsafe(watch.close)  # the collector may run in any thread


class StreamController(Controller):
    path = "/jobs/events"
    tags = ["jobs"]
    guards = [users_only]

    @get(
        "/stream",
        summary="The caller's job events as they happen (Server-Sent Events)",
        media_type=EVENT_STREAM,
        responses={200: ResponseSpec(str, description="text/event-stream", media_type=EVENT_STREAM, generate_examples=False)}
        | error_responses(401, 403, 422, 503),
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        stream: NamedDependency[StreamService],
        users: NamedDependency[UserService],
        stream_keep_alive: NamedDependency[float],
        last_event_id_header: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", description="resume after this id (EventSource sends it)", required=False)
        ] = None,
        last_event_id: Annotated[
            str | None, QueryParameter(description="resume after this id, for clients that cannot send Last-Event-ID")
        ] = None,
    ) -> Stream:
        watch = await stream.open(principal, resume_point(last_event_id_header, last_event_id))
        return Stream(watched_stream(watch, users, bearer_token(request), stream_keep_alive), media_type=EVENT_STREAM, headers=HEADERS)


@contextmanager
def streams_end_on_exit_signals(stream: StreamService) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM first end every open stream, then do what they did
    before (uvicorn's: stop accepting, wait for open responses, then shut the app down). Without it
    the server would wait for the streams, which never end by themselves, until its graceful
    timeout. Only in the main thread (where signal handlers live); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    installed: dict[int, Any] = {}

    def chained(signum: int, frame: FrameType | None) -> None:
        stream.close_threadsafe()
        previous = installed.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:  # what the signal would have done: end the process
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        installed[sig] = signal.signal(sig, chained)
    try:
        yield
    finally:
        for signum, previous in installed.items():
            if signal.getsignal(signum) is chained:
                signal.signal(signum, previous)
