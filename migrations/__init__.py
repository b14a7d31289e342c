"""Alembic migrations that own the catalog schema.

mreg applies them itself (``registry/catalog/db.py``): the script location is this package's folder,
found through ``migrations.__file__``, so they work from an installed wheel with no alembic.ini.
"""

SCHEMA_HEAD = "0011"
"""The newest migration in ``versions/`` (a test keeps the two in step). Knowing it lets an up-to-date
catalog open, and ``mreg ls`` read it, without importing Alembic."""
