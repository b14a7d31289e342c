"""The catalog: which repos, revisions, refs, files, downloads, mirror and convert jobs mreg knows, in a SQL database.

``MREG_DATABASE_URL`` selects the database (SQLite is only the embedded default); the schema is
owned by the Alembic migrations in the top-level ``migrations`` package and applied by
``Catalog.open``. Database errors surface as ``CatalogError``.
"""

from mreg.registry.catalog.catalog import Catalog
from mreg.registry.catalog.records import ConvertJob, DerivedRecord, FileRecord, HeaderRecord, IndexedRevision, MirrorJob, RepoSummary, TensorPage

__all__ = ["Catalog", "ConvertJob", "DerivedRecord", "FileRecord", "HeaderRecord", "IndexedRevision", "MirrorJob", "RepoSummary",
           "TensorPage"]
