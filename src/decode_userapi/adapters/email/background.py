"""Sends email in the background, so a status update never waits for (or fails with) the mail service."""

from __future__ import annotations

import asyncio

import structlog

from decode_userapi.ports.email import EmailSender

log = structlog.get_logger(__name__)


class BackgroundEmailSender:
    """Wraps a sender: `send` returns at once; failures are logged; `aclose` waits for what is pending."""

    def __init__(self, sender: EmailSender, drain_timeout: float = 30.0) -> None:
        self._sender = sender
        self._tasks: set[asyncio.Task[None]] = set()
        self._drain_timeout = drain_timeout
        self.failures = 0  # emails that could not be sent, since start (for metrics)

    async def start(self) -> None:
        await self._sender.start()

    async def send(self, to: str, subject: str, text: str) -> None:
        task = asyncio.create_task(self._send(to, subject, text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, to: str, subject: str, text: str) -> None:
        try:
            await self._sender.send(to, subject, text)
        except Exception as e:  # noqa: BLE001 - a failed email must never break anything else
            self.failures += 1
            log.error("email.failed", to=to, subject=subject, error=str(e) or type(e).__name__)

    async def drain(self) -> None:
        """Wait for the emails being sent now."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._drain_timeout)

    async def aclose(self) -> None:
        await self.drain()
        await self._sender.aclose()
