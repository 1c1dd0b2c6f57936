"""The application catalog from a YAML file (SEED.md format), re-read while the service runs.

The file's (mtime_ns, size) is checked at most once per `check_interval` seconds. A changed file is
re-read; if the new version is broken, it is logged once and the last good catalog keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog
import yaml

from decode_userapi.domain.applications import Catalog, CatalogError

log = structlog.get_logger(__name__)

# (st_mtime_ns, st_size) of the file; None when it cannot be stat'ed (missing, no permission).
Stamp = tuple[int, int] | None


def file_stamp(path: Path) -> Stamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def load_catalog(path: Path) -> Catalog:
    """Read and decode the file; `CatalogError` names the file and what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError(f"{path}: cannot read the application config: {e}") from e
    return parse_catalog(text, str(path))


def parse_catalog(text: str, source: str) -> Catalog:
    """Decode the YAML text; `CatalogError` names `source` (a path, a URI) and what is wrong with it."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CatalogError(f"{source}: not valid YAML: {e}") from e
    try:
        return Catalog.from_document(document)
    except CatalogError as e:
        raise CatalogError(f"{source}: {e}") from e


class YamlFileCatalogSource:
    def __init__(self, path: str | Path, check_interval: float = 1.0) -> None:
        self._path = Path(path)
        self._check_interval = check_interval
        self._catalog: Catalog | None = None
        self._stamp: Stamp = None  # of the version last read, good or bad
        self._next_check = 0.0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the file; a broken file at start-up raises `CatalogError`."""
        self._stamp, catalog = await asyncio.to_thread(self._load)
        self._catalog = catalog
        self._next_check = time.monotonic() + self._check_interval
        log.info("catalog.loaded", path=str(self._path), applications=sorted(catalog.applications))

    async def aclose(self) -> None:
        pass

    async def current(self) -> Catalog:
        if self._catalog is None:
            raise RuntimeError("YamlFileCatalogSource.start() was not awaited")
        if time.monotonic() >= self._next_check:
            async with self._lock:
                if time.monotonic() >= self._next_check:  # nobody else checked while we waited
                    await self._refresh()
                    self._next_check = time.monotonic() + self._check_interval
        return self._catalog

    def _load(self) -> tuple[Stamp, Catalog]:
        stamp = file_stamp(self._path)  # before reading: a write during the read shows at the next check
        return stamp, load_catalog(self._path)

    def _reload_if_changed(self, known: Stamp) -> tuple[Stamp, Catalog | CatalogError] | None:
        stamp = file_stamp(self._path)
        if stamp == known:
            return None
        try:
            return self._load()
        except CatalogError as e:
            return stamp, e

    async def _refresh(self) -> None:
        changed = await asyncio.to_thread(self._reload_if_changed, self._stamp)
        if changed is None:
            return
        self._stamp, result = changed  # a bad version is remembered too, so it is logged only once
        if isinstance(result, CatalogError):
            log.error("catalog.reload_failed", path=str(self._path), error=str(result))
            return
        self._catalog = result
        log.info("catalog.reloaded", path=str(self._path), applications=sorted(result.applications))
