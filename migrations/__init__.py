"""Alembic migrations that own the catalog schema.

mreg applies them itself (``registry/catalog/db.py``): the script location is this package's folder,
found through ``migrations.__file__``, so they work from an installed wheel with no alembic.ini.
A new SQLite catalog is made from ``sqlite_head.py``, the schema they build: after adding or changing a
migration, regenerate it with ``python -m mreg.registry.catalog.head_schema`` (a test fails until then).
"""

SCHEMA_HEAD = "0011"
"""The newest migration in ``versions/`` (a test keeps the two in step). Knowing it lets an up-to-date
catalog open, and ``mreg ls`` read it, without importing Alembic."""
