"""Alembic migrations that own the catalog schema.

mreg applies them itself (``registry/catalog/db.py``): the script location is this package's folder,
found through ``migrations.__file__``, so they work from an installed wheel with no alembic.ini.
"""
