from __future__ import annotations

from typing import Any, Protocol


class WorkerDispatch(Protocol):
    """Hands jobs to the worker-facing API."""

    async def submit(self, payload: dict[str, Any]) -> None:
        """Deliver one job payload; `WorkerUnavailable` if it could not be delivered."""
        ...

    async def ping(self) -> str | None:
        """None if the worker-facing API answers at all, else what went wrong (for readiness reports)."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
