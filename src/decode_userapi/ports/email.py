from __future__ import annotations

from typing import Protocol


class EmailSender(Protocol):
    async def send(self, to: str, subject: str, text: str) -> None:
        """Send one plain-text email. Raises on failure; callers decide what a failure means."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
