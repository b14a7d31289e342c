"""The local pieces alone, the store and the catalog, for commands that never go upstream (no HTTP); and the
catalog opened on demand, for ``mreg pull``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mreg.registry.config import Settings, check_catalog_driver
from mreg.registry.imports import import_for_good
from mreg.registry.store import Store

if TYPE_CHECKING:
    from mreg.registry.catalog import Catalog


@dataclass
class Local:
    """The store and the catalog of one MREG_HOME."""

    store: Store
    catalog: Catalog


@contextlib.asynccontextmanager
async def open_local(settings: Settings) -> AsyncIterator[Local]:
    """Yield the store and the opened catalog; the catalog is closed on exit."""
    from mreg.registry.catalog import Catalog

    catalog = await Catalog.open(settings.database_url)
    try:
        yield Local(Store(settings.home), catalog)
    finally:
        await catalog.close()


class CatalogOnDemand:
    """The catalog of ``url``, imported and opened when first needed instead of up front.

    Importing the catalog (SQLAlchemy) is most of ``mreg pull``'s start-up. A pull given one fetches the large
    files the store lacks first, and asks for the catalog (``get``) once their bytes are in, while they are
    hashed and synced (work that does not hold the GIL). Close it with ``close``. A URL naming a driver the
    catalog does not run on fails here, before any download (``config.check_catalog_driver``).
    """

    def __init__(self, url: str) -> None:
        check_catalog_driver(url)
        self.url = url
        self._opening: asyncio.Task[Catalog] | None = None

    async def get(self) -> Catalog:
        """The catalog, imported and opened by the first call (the import in a worker thread)."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opening)

    async def close(self) -> None:
        """Close the catalog if it was opened (waiting for an opening under way)."""
        if self._opening is None:
            return
        with contextlib.suppress(Exception):
            catalog = await self._opening
            await catalog.close()

    async def _open(self) -> Catalog:
        module = await asyncio.to_thread(import_for_good, "mreg.registry.catalog.catalog")
        catalog: Catalog = await module.Catalog.open(self.url)
        return catalog


async def opened(catalog: Catalog | CatalogOnDemand) -> Catalog:
    """``catalog`` itself, or the one a ``CatalogOnDemand`` opens."""
    return await catalog.get() if isinstance(catalog, CatalogOnDemand) else catalog


@contextlib.asynccontextmanager
async def catalog_on_demand(settings: Settings) -> AsyncIterator[CatalogOnDemand]:
    """Yield the catalog of ``settings`` on demand; it is closed on exit if it was opened."""
    catalog = CatalogOnDemand(settings.database_url)
    try:
        yield catalog
    finally:
        await catalog.close()
