"""An in-memory ApplicationCatalogSource; `set` swaps the catalog, as an edited file would."""

from __future__ import annotations

from decode_userapi.domain.applications import Catalog


class InMemoryCatalogSource:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def current(self) -> Catalog:
        return self._catalog

    def set(self, catalog: Catalog) -> None:
        self._catalog = catalog
