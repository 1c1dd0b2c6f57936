from __future__ import annotations

from typing import Any, Protocol

# Why a delivery failed (`WorkerUnavailable.kind`), as operators see it in logs, metrics and /ready.
FAULT_KINDS = (
    "rejected",  # 400, 409, 422: this payload is refused for good; the only kind that fails a job
    "unauthorized",  # 401, 403: our INTERNAL_API_KEY_SECRET is not the API's
    "endpoint",  # 404, 405: WORKERFACING_API_URL does not point at the worker-facing API
    "server_error",  # 5xx
    "throttled",  # 408, 429
    "unexpected",  # any other answer
    "timeout",  # no answer within the attempt's deadline
    "connection",  # cannot connect, or the connection broke
)
# Kinds that no waiting will cure: someone must fix the configuration (jobs wait meanwhile).
MISCONFIGURED_KINDS = frozenset({"unauthorized", "endpoint"})


class WorkerDispatch(Protocol):
    """Hands jobs to the worker-facing API."""

    async def submit(self, payload: dict[str, Any]) -> None:
        """Deliver one job payload, in one attempt (the dispatcher retries). `WorkerRejected` if the
        API refuses this payload for good, `WorkerUnavailable` (with its `kind`) for any other failure."""
        ...

    async def ping(self) -> str | None:
        """None if the worker-facing API answers at all, else what went wrong (for readiness reports)."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
