"""The local pieces alone, the store and the catalog, for commands that never go upstream (no HTTP); and the
catalog opened on demand, for ``mreg pull``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mreg.registry.config import Settings
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
    files the store lacks first, and has it opened (``start``) once their bytes are in, while they are hashed
    and synced (work that does not hold the GIL), then records them (``get``). Close it with ``close``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._opening: asyncio.Task[Catalog] | None = None

    def start(self) -> None:
        """Begin importing and opening the catalog, if not begun yet."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())

    async def get(self) -> Catalog:
        """The opened catalog (opening it now if ``start`` was not called)."""
        self.start()
        assert self._opening is not None
        return await asyncio.shield(self._opening)

    async def close(self) -> None:
        """Close the catalog if it was opened (waiting for an opening under way)."""
        if self._opening is None:
            return
        with contextlib.suppress(Exception):
            catalog = await self._opening
            await catalog.close()

    async def _open(self) -> Catalog:
        module = await asyncio.to_thread(_import_quietly, "mreg.registry.catalog.catalog")
        catalog: Catalog = await module.Catalog.open(self.url)
        return catalog


def _import_quietly(name: str) -> object:
    """Import module ``name`` with the cyclic garbage collector paused, then frozen out of what it built (as
    ``cli.lazy`` does for a command's import: collections during an import walk its objects again and again).
    What lives when it freezes is never collected: this suits a command's process, not a long-lived one."""
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        gc.enable()


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
