from __future__ import annotations

from typing import Protocol

from decode_userapi.domain.applications import Catalog


class ApplicationCatalogSource(Protocol):
    async def current(self) -> Catalog:
        """The current catalog, re-read when its source changed; the last good one if a new one is bad."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
