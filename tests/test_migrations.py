"""Every Alembic migration, one step at a time up and then down, on an empty SQLite file and an empty
PostgreSQL database (the `empty_url` fixture): each step applies, the head schema matches the ORM
models (autogenerate's diff is empty), and going all the way down leaves no catalog table. A fresh SQLite
catalog is created from the snapshot of what they build (migrations/sqlite_head.py), which must be exactly that."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from mreg.migrations import SCHEMA_HEAD, sqlite_head
from mreg.registry.catalog import Catalog
from mreg.registry.catalog.db import alembic_config, make_engine, writer
from mreg.registry.catalog.head_schema import migrated_statements, recorded_statements
from mreg.registry.catalog.models import Base

TABLES = set(Base.metadata.tables)


def _revisions() -> list[str]:
    """The migrations from the first to head."""
    return [script.revision for script in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))]


async def _step(engine: AsyncEngine, direction: str, target: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(command, direction)(config, target)

    async with writer(engine).begin() as conn:
        await conn.run_sync(run)


async def _state(engine: AsyncEngine) -> tuple[str | None, set[str]]:
    """The schema's current revision and its catalog tables."""

    def read(connection: Connection) -> tuple[str | None, set[str]]:
        return (MigrationContext.configure(connection).get_current_revision(),
                set(inspect(connection).get_table_names()) - {"alembic_version"})

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def _diff(engine: AsyncEngine) -> list[object]:
    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


async def test_every_migration_up_and_down(empty_url: str) -> None:
    revisions = _revisions()
    assert len(revisions) >= 6 and revisions[0] == "0001"
    engine = make_engine(empty_url)
    try:
        tables: list[set[str]] = []
        for revision in revisions:
            await _step(engine, "upgrade", revision)
            current, present = await _state(engine)
            assert current == revision
            assert not tables or tables[-1] <= present  # a migration keeps what the earlier ones made
            tables.append(present)
        assert tables[-1] == TABLES
        assert await _diff(engine) == []  # the ORM models are what the migrations built
        for below in reversed(["base", *revisions[:-1]]):  # each migration's downgrade, newest first
            await _step(engine, "downgrade", below)
            current, present = await _state(engine)
            assert current == (None if below == "base" else below)
            assert present == (set() if below == "base" else tables[revisions.index(below)])
        await _step(engine, "upgrade", "head")  # and up again, in one go
        assert await _state(engine) == (revisions[-1], TABLES)
        assert await _diff(engine) == []
    finally:
        await engine.dispose()


def test_the_sqlite_snapshot_is_what_the_migrations_build() -> None:
    """Fails when a migration changed without `python -m mreg.registry.catalog.head_schema` being run again."""
    assert sqlite_head.REVISION == SCHEMA_HEAD
    assert list(sqlite_head.STATEMENTS) == migrated_statements()


async def test_a_fresh_sqlite_catalog_is_the_migrated_schema_at_head(tmp_path) -> None:
    catalog = await Catalog.open(f"sqlite+aiosqlite:///{tmp_path}/catalog.db")
    await catalog.close()
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/catalog.db")
    try:
        assert await _state(engine) == (SCHEMA_HEAD, TABLES)
        async with engine.connect() as conn:
            assert await conn.run_sync(recorded_statements) == list(sqlite_head.STATEMENTS)
        assert await _diff(engine) == []
    finally:
        await engine.dispose()
