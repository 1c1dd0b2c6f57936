"""An in-memory WorkerDispatch: records what it was given; `fail = True` makes it fail (`fail_kind`)."""

from __future__ import annotations

import copy
from typing import Any

from decode_userapi.domain.errors import WorkerUnavailable


class InMemoryWorkerDispatch:
    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []
        self.fail = False
        self.fail_kind = "server_error"

    async def ping(self) -> str | None:
        return "set to fail" if self.fail else None

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def submit(self, payload: dict[str, Any]) -> None:
        if self.fail:
            raise WorkerUnavailable(
                "the worker-facing API is unavailable (in-memory dispatch set to fail)", kind=self.fail_kind
            )
        self.submitted.append(copy.deepcopy(payload))
