"""The catalog: which repos, revisions, refs, files, downloads, mirror and convert jobs mreg knows, in a SQL database.

``MREG_DATABASE_URL`` selects the database (SQLite, the embedded default, or PostgreSQL); the schema is
owned by the Alembic migrations in the top-level ``migrations`` package and applied by
``Catalog.open``. Database errors surface as ``CatalogError``.

``Catalog`` is imported on first use (it brings SQLAlchemy), so ``mreg ls`` can read the embedded
catalog through ``catalog.listing`` alone.
"""

from typing import TYPE_CHECKING, Any

from mreg.registry.catalog.records import (ConvertJob, DerivedRecord, FileRecord, HeaderRecord, IndexedRevision, JobLease,
                                           MirrorJob, PinRecord, RepoSummary, RevisionUse, TensorPage)

__all__ = ["Catalog", "ConvertJob", "DerivedRecord", "FileRecord", "HeaderRecord", "IndexedRevision", "JobLease", "MirrorJob",
           "PinRecord", "RepoSummary", "RevisionUse", "TensorPage"]

if TYPE_CHECKING:
    from mreg.registry.catalog.catalog import Catalog


def __getattr__(name: str) -> Any:
    if name == "Catalog":
        from mreg.registry.catalog.catalog import Catalog

        return Catalog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
