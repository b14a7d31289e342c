"""The catalog's engine: one async engine per database URL, its write lock, and migrations to head.

SQLite (the embedded default) and PostgreSQL (``postgresql+asyncpg://``) are supported. On both,
write transactions take one database-wide write lock first, so that writers in several processes
queue instead of failing mid-transaction and get-or-create stays a plain select then insert. On
SQLite a connect hook sets WAL, a busy timeout and ``foreign_keys=ON``, and transactions are begun
by us: ``BEGIN IMMEDIATE`` for writes and a plain ``BEGIN`` for reads. On PostgreSQL the lock is a
transaction-level advisory lock (``pg_advisory_xact_lock``), released at commit or rollback. The
schema belongs to the Alembic scripts in the ``migrations`` package.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mreg import migrations
from mreg.migrations import SCHEMA_HEAD
from sqlalchemy import URL, Connection, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mreg.registry.catalog import head_schema
from mreg.registry.config import DRIVERS_HINT
from mreg.registry.errors import CatalogError

if TYPE_CHECKING:
    from alembic.config import Config

BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite connection waits for another process's write lock before failing."""

WRITE_OPTION = "mreg_write"
"""Execution option marking a writer connection (its transactions take the write lock first)."""
WRITE_LOCK_KEY = 0x6D726567  # "mreg"
"""The PostgreSQL advisory lock key that stands for the catalog's write lock."""


def _one_line(exc: BaseException) -> str:
    """A short, single-line reason for a database error (the driver's message if there is one)."""
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(reason).strip().splitlines()
    return lines[0] if lines else type(reason).__name__


@contextmanager
def db_errors(action: str, url: URL | str) -> Iterator[None]:
    """Translate SQLAlchemy and OS errors into a one-line ``CatalogError``."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        shown = url.render_as_string(hide_password=True) if isinstance(url, URL) else url
        raise CatalogError(f"catalog {action} failed ({shown}): {_one_line(exc)}") from exc


def make_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; for a SQLite file, its folder is created and the file opened once."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise CatalogError(f"invalid database URL {url!r}: {_one_line(exc)}") from exc
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"cannot create the catalog folder {folder}: {exc.strerror or exc}") from exc
        try:  # fail here, cleanly: aiosqlite leaks a worker thread when its connect fails
            sqlite3.connect(parsed.database).close()
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open the catalog database {parsed.database}: {exc}") from exc
    try:
        engine = create_async_engine(parsed)
    except (SQLAlchemyError, ImportError) as exc:
        raise CatalogError(f"cannot use database URL {parsed.render_as_string()}: {_one_line(exc)} ({DRIVERS_HINT})") \
            from exc
    if sqlite:
        _tune_sqlite(engine)
    elif engine.dialect.name == "postgresql":
        _lock_postgresql_writes(engine)
    return engine


def _tune_sqlite(engine: AsyncEngine) -> None:
    """Install the SQLite-only connect and begin hooks described in the module docstring."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver must not emit BEGIN itself: we do
        cursor = dbapi_connection.cursor()
        for pragma in (f"busy_timeout = {BUSY_TIMEOUT_MS}", "foreign_keys = ON", "journal_mode = WAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.execute("PRAGMA synchronous = NORMAL")  # with WAL: never corrupt; a power cut may undo the last commits
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _lock_postgresql_writes(engine: AsyncEngine) -> None:
    """Make a writer's transactions begin by taking the catalog's advisory write lock."""

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(WRITE_OPTION, False):
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine, marked so that its transactions take the write lock up front."""
    return engine.execution_options(**{WRITE_OPTION: True})


OPEN_ATTEMPTS = 5
OPEN_RETRY_DELAY = 0.2


def alembic_config() -> "Config":
    """Alembic's configuration, located through ``migrations.__file__`` (works when installed)."""
    from alembic.config import Config

    config = Config()
    location = str(Path(migrations.__file__).resolve().parent)
    config.set_main_option("script_location", location.replace("%", "%%"))
    return config


def _heads_differ(connection: Connection) -> bool:
    if not inspect(connection).has_table("alembic_version"):
        return True
    current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return set(current) != {SCHEMA_HEAD}


def migrate(connection: Connection) -> None:
    """Run the Alembic migrations up to head over ``connection`` (in its transaction)."""
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config()
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise CatalogError(f"catalog migration failed: {_one_line(exc)}") from exc


def _upgrade(connection: Connection) -> None:
    """An empty SQLite catalog gets the head schema at once (``head_schema``); any other is migrated."""
    if not head_schema.created(connection):
        migrate(connection)


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Apply pending migrations; a no-op (and no write lock) when the schema is already at head.

    If another process migrates at the same moment and ours fails, the schema being at head
    afterwards counts as success. SQLite can refuse a fresh file's first connections outright
    ("database is locked", without waiting) while another process switches it to WAL: retried.
    """
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return await _upgrade_once(engine)
        except CatalogError as exc:
            if "database is locked" not in str(exc) or attempt + 1 == OPEN_ATTEMPTS:
                raise
            await asyncio.sleep(OPEN_RETRY_DELAY * (attempt + 1))


async def _upgrade_once(engine: AsyncEngine) -> None:
    with db_errors("open", engine.url):
        async with engine.connect() as conn:
            if not await conn.run_sync(_heads_differ):
                return
    try:
        with db_errors("migration", engine.url):
            async with writer(engine).begin() as conn:
                await conn.run_sync(_upgrade)
    except CatalogError:
        with db_errors("migration", engine.url):
            async with engine.connect() as conn:
                if await conn.run_sync(_heads_differ):
                    raise
