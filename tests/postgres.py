"""A throwaway PostgreSQL cluster for the tests (Debian's server, run as the ``postgres`` user when
the tests run as root, as CI does), and the fixtures that give tests a catalog database.

- `postgres`: the session's cluster, started the first time a test asks for it (initdb, start and the
  template: 5–10 s on a loaded 2-core machine), with a template database migrated to head; stopped
  (``pg_ctl -m immediate stop``) at session end.
- `catalog_url`: a fresh catalog's URL, parametrised over ``sqlite`` (a file not made yet) and
  ``postgresql`` (a new database copied from the template: ``CREATE DATABASE … TEMPLATE …``, ~0.2–0.5 s).
- `pg_url`: the same, PostgreSQL only.
- `module_catalog_url`: `catalog_url` for a module's shared fixtures (one database per module and backend).
- `empty_url`: an empty database's URL on either backend (no file yet; a database from ``template0``),
  for what happens before the first migration.

`tests/conftest.py` imports them, so every test module can ask for them. `fetch_rows` and `rows_of`
read a catalog database on either backend.
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["BACKENDS", "PostgresCluster", "catalog_url", "empty_url", "fetch_rows", "module_catalog_url", "pg_url",
           "postgres", "rows_of"]

BACKENDS = ("sqlite", "postgresql")
"""The catalog databases the catalog suites run on (the `catalog_url` fixture's params)."""
TEMPLATE = "mreg_template"
USER = "mreg"
SERVER_SETTINGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"


def _bin_dir() -> Path:
    """Debian's PostgreSQL binaries (the newest installed version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        pytest.fail("PostgreSQL's server is not installed (apt-get install postgresql; scripts/test does it)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One initdb'd, running cluster in a temporary folder, trusting local connections as user ``mreg``."""

    def __init__(self) -> None:
        self._bin = _bin_dir()
        self._as_postgres = os.geteuid() == 0  # the server refuses to run as root
        self.root = Path(tempfile.mkdtemp(prefix="mreg-pg-"))
        self.root.chmod(0o711)
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        try:
            self._server("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-N", "-E", "UTF8",
                         "--locale=C.UTF-8")
            self._server("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-o",
                         f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} {SERVER_SETTINGS}", "start")
            self.sql(f"CREATE DATABASE {TEMPLATE}")
            asyncio.run(_migrate(self.url(TEMPLATE)))
        except BaseException:
            self.stop()
            raise

    def _server(self, program: str, *args: str) -> None:
        """Run a server program (as ``postgres`` when we are root); its output only if it fails."""
        command = [str(self._bin / program), *args]
        if self._as_postgres:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.root / "server.log"
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}"
                               f"{log.read_text() if log.is_file() else ''}")

    def sql(self, statement: str) -> None:
        """Run one statement in the ``postgres`` database (psql, autocommit)."""
        subprocess.run([str(self._bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-p", str(self.port), "-U", USER, "-d", "postgres", "-c", statement],
                       check=True, capture_output=True, timeout=60)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` in this cluster."""
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, template: str = TEMPLATE, options: str = "") -> str:
        """A new database copied from ``template`` (the migrated catalog by default), with CREATE DATABASE's
        other ``options``; its URL."""
        name = f"test_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {template} {options}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database ``url`` names, closing what still connects to it."""
        self.sql(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server at once (nothing in it is worth a checkpoint), if it runs, and remove its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._server("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


async def fetch_rows(url: str, sql: str, **params: object) -> list[tuple]:
    """The rows of ``sql`` (with ``:name`` parameters) on the database at ``url`` (either backend)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(sql), params)]
    finally:
        await engine.dispose()


def rows_of(url: str, sql: str, **params: object) -> list[tuple]:
    """`fetch_rows` for synchronous tests (not inside a running event loop)."""
    return asyncio.run(fetch_rows(url, sql, **params))


async def _migrate(url: str) -> None:
    from mreg.registry.catalog import Catalog

    await (await Catalog.open(url)).close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL cluster (started on first use)."""
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> Iterator[str]:
    """A fresh catalog database on PostgreSQL, migrated to head; dropped after the test."""
    url = postgres.new_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh catalog's URL: a SQLite file under tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="module", params=BACKENDS)
def module_catalog_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh catalog's URL shared by a module's tests: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('catalog') / 'catalog.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.new_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database's URL: a SQLite file not made yet, or a new PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty' / 'catalog.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.new_database("template0")
    yield url
    cluster.drop_database(url)
