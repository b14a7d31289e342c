"""The two ways a daemon runs in the tests: embedded (SQLite catalog and local store in its home) and shared
(a PostgreSQL catalog and an S3 store, as replicas run). Daemon suites take the ``backend`` fixture to run on
both; a test about what only one of them does asks for it by name (``local_backend``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

BACKENDS = ("local", "postgresql+s3")


@dataclass(frozen=True)
class Backend:
    """Which backend, and the `mreg serve` options that select it (none for the embedded one)."""

    name: str
    args: tuple[str, ...] = ()

    @property
    def local(self) -> bool:
        return self.name == "local"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn: the shared one with a fresh PostgreSQL database and a fresh S3 prefix."""
    if request.param == "local":
        return Backend("local")
    database, store = request.getfixturevalue("pg_url"), request.getfixturevalue("s3_url")
    return Backend(request.param, ("--database-url", database, "--store", store))


@pytest.fixture
def local_backend() -> Backend:
    """The embedded backend alone, for tests of local files (snapshots, partial files, blobs on disk)."""
    return Backend("local")
