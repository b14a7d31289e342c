"""The catalog: which repos, revisions, refs, files and downloads mreg knows, in a SQL database.

``MREG_DATABASE_URL`` selects the database (SQLite is only the embedded default); the schema is
owned by the Alembic migrations in the top-level ``migrations`` package and applied by
``Catalog.open``. Database errors surface as ``CatalogError``.
"""

from .catalog import Catalog
from .records import DerivedRecord, FileRecord, HeaderRecord, IndexedRevision, RepoSummary

__all__ = ["Catalog", "DerivedRecord", "FileRecord", "HeaderRecord", "IndexedRevision", "RepoSummary"]
