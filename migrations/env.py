"""Alembic environment for the catalog.

mreg runs migrations programmatically (``registry.catalog.db.upgrade_to_head``) over a connection it
passes in ``config.attributes["connection"]``, already inside a transaction; there is no alembic.ini
and no offline (``--sql``) mode.
"""

from __future__ import annotations

from alembic import context

from mreg.registry.catalog.models import Base
from mreg.registry.errors import CatalogError

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise CatalogError("catalog migrations run through Catalog.open: pass config.attributes['connection']")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
