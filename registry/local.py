"""The local pieces alone, the store and the catalog, for commands that never go upstream (no HTTP)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mreg.registry.catalog import Catalog
from mreg.registry.config import Settings
from mreg.registry.store import Store


@dataclass
class Local:
    """The store and the catalog of one MREG_HOME."""

    store: Store
    catalog: Catalog


@contextlib.asynccontextmanager
async def open_local(settings: Settings) -> AsyncIterator[Local]:
    """Yield the store and the opened catalog; the catalog is closed on exit."""
    catalog = await Catalog.open(settings.database_url)
    try:
        yield Local(Store(settings.home), catalog)
    finally:
        await catalog.close()
