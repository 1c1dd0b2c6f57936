"""An in-memory EmailSender: an `outbox` of (to, subject, text); `fail = True` makes it raise."""

from __future__ import annotations

from decode_userapi.domain.errors import DependencyUnavailable


class InMemoryEmailSender:
    def __init__(self) -> None:
        self.outbox: list[tuple[str, str, str]] = []
        self.fail = False

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def send(self, to: str, subject: str, text: str) -> None:
        if self.fail:
            raise DependencyUnavailable("the email service is unavailable (in-memory sender set to fail)")
        self.outbox.append((to, subject, text))
