"""The EmailSender used when email is not configured: it logs what it would have sent."""

from __future__ import annotations

import structlog

log = structlog.get_logger(__name__)


class LogEmailSender:
    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def send(self, to: str, subject: str, text: str) -> None:
        log.info("email.skipped", reason="email is not configured", to=to, subject=subject)
