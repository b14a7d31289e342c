"""The catalog on real databases (a SQLite file and a PostgreSQL database: the `catalog_url` fixture):
migrations, queries, errors and several processes at once."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from mreg.registry.catalog import Catalog, FileRecord, HeaderRecord
from mreg.registry.catalog.db import alembic_config, make_engine, writer
from mreg.registry.catalog.models import Base, utcnow
from mreg.registry.config import Settings
from mreg.registry.errors import CatalogError, UsageError
from mreg.registry.formats.events import TensorInfo
from mreg.registry.repo import RepoRef
from tests.postgres import PostgresCluster, fetch_rows

ROOT = Path(__file__).resolve().parents[1]
REPO = RepoRef.parse("org/model")
OTHER = RepoRef.parse("org/data", "dataset")
C1 = "1234567" + "a" * 33
C2 = "1234567" + "b" * 33
C3 = "fedcba9" + "0" * 33
SHA = "5" * 64
TABLES = {"alembic_version", "repos", "revisions", "refs", "files", "blobs", "downloads", "file_headers", "tensors",
          "mirror_jobs", "mirror_job_runs", "derived_artifacts", "convert_jobs", "pins",
          "failed_transfers", "eviction_lease", "eviction_rounds", "blobs_in_use", "doomed_blobs", "fill_leases"}
FILES = [FileRecord("config.json", 10, "c" * 40), FileRecord("model.safetensors", 1000, "d" * 40, lfs_sha256=SHA)]


def url_for(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
async def catalog(catalog_url: str):
    cat = await Catalog.open(catalog_url)
    yield cat
    await cat.close()


async def test_a_fresh_sqlite_file_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "new" / "folder" / "catalog.db"
    cat = await Catalog.open(url_for(db))
    await cat.close()
    assert rows(db, "SELECT version_num FROM alembic_version") == [(head(),)]
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]


async def test_opened_catalog_is_at_head_and_matches_the_models(catalog_url: str) -> None:
    await (await Catalog.open(catalog_url)).close()
    assert await fetch_rows(catalog_url, "SELECT version_num FROM alembic_version") == [(head(),)]
    engine = create_async_engine(catalog_url)
    async with engine.connect() as conn:
        assert set(await conn.run_sync(lambda c: inspect(c).get_table_names())) == TABLES
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
        )
    await engine.dispose()
    assert diff == []  # the ORM models match what the migrations built


async def test_reopening_is_a_no_op(catalog_url: str) -> None:
    cat = await Catalog.open(catalog_url)
    await cat.record_revision(REPO, C1, FILES, ref="main")
    await cat.close()
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        cat = await Catalog.open(catalog_url)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert statements and not any(s.lstrip().upper().startswith(("BEGIN IMMEDIATE", "SELECT PG_ADVISORY", "CREATE",
                                                                  "INSERT", "UPDATE")) for s in statements)
    assert await cat.resolve_revision(REPO, "main") == C1
    await cat.close()
    assert await fetch_rows(catalog_url, "SELECT version_num FROM alembic_version") == [(head(),)]


def _open_and_write(url: str, barrier, index: int) -> None:  # type: ignore[no-untyped-def]
    """One process: wait for the others, open the same fresh catalog, write a few revisions."""

    async def run() -> None:
        barrier.wait()
        cat = await Catalog.open(url)
        repo = RepoRef.parse(f"org/model{index}")
        for n in range(5):
            await cat.record_revision(repo, f"{index:020x}{n:020x}", FILES, ref="main")
            await cat.record_revision(REPO, C1, FILES, ref="main")  # every process writes the same rows too
        await cat.close()

    asyncio.run(run())


def _run_writers(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_open_and_write, args=(url, barrier, i)) for i in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]


async def test_concurrent_opens_and_writes(empty_url: str) -> None:
    """Four processes open the same fresh catalog (a new SQLite file; an empty PostgreSQL database),
    migrate it and write the same rows at once: every write lands once."""
    catalog_url = empty_url
    await asyncio.to_thread(_run_writers, catalog_url)
    assert await fetch_rows(catalog_url, "SELECT version_num FROM alembic_version") == [(head(),)]
    assert await fetch_rows(catalog_url, "SELECT count(*) FROM revisions") == [(21,)]
    assert await fetch_rows(catalog_url, "SELECT count(*) FROM files") == [(42,)]
    assert await fetch_rows(catalog_url, "SELECT count(*) FROM repos") == [(5,)]


async def test_a_writer_waits_for_another_connections_write_transaction(catalog: Catalog, catalog_url: str) -> None:
    await catalog.record_revision(REPO, C1, FILES)
    holder = writer(make_engine(catalog_url))
    try:
        async with holder.begin() as conn:
            await conn.execute(text("SELECT 1"))  # the write lock is taken as the transaction begins
            waiting = asyncio.ensure_future(catalog.set_ref(REPO, "main", C1))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiting), 0.5)
        await asyncio.wait_for(waiting, 30)  # once the other transaction ends, the write goes through
    finally:
        await holder.dispose()
    assert await catalog.resolve_revision(REPO, "main") == C1


async def test_text_is_ordered_by_code_point_whatever_the_collation(postgres: PostgresCluster) -> None:
    """A PostgreSQL database whose collation is a language's (ICU en-US: 'a' < 'B' < '_x') orders paths, refs
    and repos as SQLite and Python do, by code point."""
    url = postgres.new_database("template0", "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    names = ["a.json", "B.json", "_x.json", "a/b.json", "a.b.json", "Z.json"]
    cat = await Catalog.open(url)
    try:
        await cat.record_revision(REPO, C1, [FileRecord(name, 1, "c" * 40) for name in names])
        for name in names:
            await cat.set_ref(REPO, name, C1)
        repos = ["b", "B", "a-b", "a.b", "a_b", "Z"]
        for name in repos:
            await cat.add_job(RepoRef.parse(f"org/{name}"))
        assert [f.path for f in await cat.revision_files(REPO, C1)] == sorted(names)
        [summary] = [s for s in await cat.list_repos() if s.repo == REPO]
        assert list(summary.refs) == sorted(names)
        assert [j.repo.repo_id for j in await cat.list_jobs()] == sorted(f"org/{name}" for name in repos)
    finally:
        await cat.close()
        postgres.drop_database(url)


async def test_long_text_from_upstream_is_stored_as_given(catalog: Catalog) -> None:
    """What a hostile or odd upstream sends (a 2000-character path, 5000-character tensor name, 800-character
    dtype, architecture and upstream name) is kept whole on both backends (SQLite does not enforce VARCHAR
    lengths). Paths stay within what a PostgreSQL index entry holds (about 2700 bytes)."""
    path, name, long = "d/" * 1000 + "model.gguf", "t" * 5000, "x" * 800
    await catalog.record_revision(REPO, C1, [FileRecord(path, 10, "g" * 100, lfs_sha256="l" * 100)], upstream=long)
    await catalog.record_header(REPO, C1, HeaderRecord(path, "gguf-" + long), [TensorInfo(name, long, (1,), 0, 4)])
    await catalog.set_architecture(REPO, C1, long)
    [stored] = await catalog.revision_files(REPO, C1)
    assert (stored.path, stored.git_oid, stored.lfs_sha256) == (path, "g" * 100, "l" * 100)
    assert await catalog.tensors(REPO, C1, path) == [TensorInfo(name, long, (1,), 0, 4)]
    [indexed] = await catalog.indexed_revisions(REPO)
    assert indexed.architecture == long and indexed.headers[0].format == "gguf-" + long
    assert (await catalog.list_repos())[0].upstream == long


async def test_record_revision_is_idempotent(catalog: Catalog) -> None:
    await catalog.record_revision(REPO, C1, FILES[:1])
    await catalog.record_revision(REPO, C1, FILES, ref="main")
    await catalog.mark_file_complete(REPO, C1, "config.json", SHA, 10)
    await catalog.mark_file_complete(REPO, C1, "model.safetensors", SHA, 1000)
    await catalog.mark_revision_complete(REPO, C1)
    await catalog.record_revision(REPO, C1, FILES, ref="main")  # again, after completion
    assert await catalog.revision_state(REPO, C1) == "complete"
    assert await catalog.revision_files(REPO, C1) == [
        FileRecord("config.json", 10, "c" * 40, None, SHA, "complete"),
        FileRecord("model.safetensors", 1000, "d" * 40, SHA, SHA, "complete"),
    ]
    assert await catalog.revision_state(REPO, C2) is None
    assert await catalog.revision_files(REPO, C2) == []


async def test_ref_and_prefix_resolution(catalog: Catalog) -> None:
    await catalog.record_revision(REPO, C1, FILES, ref="main")
    await catalog.record_revision(REPO, C2, FILES)
    await catalog.record_revision(REPO, C3, FILES)
    await catalog.set_ref(REPO, "refs/pr/1", C3)
    assert await catalog.resolve_revision(REPO, "main") == C1
    assert await catalog.resolve_revision(REPO, "refs/pr/1") == C3
    assert await catalog.resolve_revision(REPO, C2) == C2
    assert await catalog.resolve_revision(REPO, "fedcba9") == C3
    assert await catalog.resolve_revision(REPO, "FEDCBA90") == C3
    assert await catalog.resolve_revision(REPO, "1234567") is None  # ambiguous
    assert await catalog.resolve_revision(REPO, "1234567b") == C2
    assert await catalog.resolve_revision(REPO, "fedcba") is None  # too short
    assert await catalog.resolve_revision(REPO, "f" * 40) is None
    assert await catalog.resolve_revision(REPO, "dev") is None
    assert await catalog.resolve_revision(REPO, "fedcb%") is None
    assert await catalog.resolve_revision(OTHER, "main") is None
    await catalog.set_ref(REPO, "main", C2)  # moving a ref
    assert await catalog.resolve_revision(REPO, "main") == C2


async def test_list_repos(catalog: Catalog) -> None:
    assert await catalog.list_repos() == []
    await catalog.record_revision(REPO, C1, FILES, ref="main")
    await catalog.set_ref(REPO, "v1", C1)
    for record in FILES:
        await catalog.mark_file_complete(REPO, C1, record.path, SHA, record.size)
    await catalog.mark_revision_complete(REPO, C1)
    await catalog.record_revision(REPO, C2, FILES[:1], ref="refs/pr/2")  # newer, but still pending
    await catalog.record_revision(OTHER, C3, FILES[:1], ref="main")
    first, second = await catalog.list_repos()
    assert (first.repo, first.commit, first.refs, first.files, first.size, first.complete) == (
        OTHER, C3, ("main",), 1, 10, False,
    )
    assert (second.repo, second.commit, second.refs, second.files, second.size, second.complete) == (
        REPO, C1, ("main", "v1"), 2, 1010, True,
    )
    assert second.updated_at.tzinfo is not None and second.updated_at.utcoffset() == timedelta(0)
    assert abs(second.updated_at - first.updated_at) < timedelta(minutes=1)
    assert second.updated_at.tzinfo == timezone.utc


async def test_remove_repo_cascades(catalog_url: str) -> None:
    cat = await Catalog.open(catalog_url)
    await cat.record_revision(REPO, C1, FILES, ref="main")
    await cat.mark_file_complete(REPO, C1, "config.json", SHA, 10)
    download = await cat.start_download(REPO, C1, 1010)
    await cat.finish_download(download, "failed", 5, "connection reset")
    await cat.record_revision(OTHER, C2, FILES[:1], ref="main")
    assert await cat.referenced_blobs() == {SHA}
    assert await cat.remove_repo(REPO) is True
    assert await cat.remove_repo(REPO) is False
    assert await cat.referenced_blobs() == set()
    assert [s.repo for s in await cat.list_repos()] == [OTHER]
    await cat.close()
    for table, left in (("repos", 1), ("revisions", 1), ("refs", 1), ("files", 1), ("downloads", 0), ("blobs", 1)):
        assert await fetch_rows(catalog_url, f"SELECT count(*) FROM {table}") == [(left,)], table


async def test_downloads(catalog_url: str) -> None:
    cat = await Catalog.open(catalog_url)
    first = await cat.start_download(REPO, C1, 100)  # the repo row is created if needed
    second = await cat.start_download(REPO, C1, 100)
    assert first != second
    await cat.finish_download(first, "complete", 100)
    with pytest.raises(UsageError):
        await cat.finish_download(second, "running", 0)
    with pytest.raises(CatalogError):
        await cat.finish_download(9999, "failed", 0, "boom")
    await cat.close()
    got = await fetch_rows(catalog_url, "SELECT status, bytes_total, bytes_fetched, error FROM downloads ORDER BY id")
    assert got == [("complete", 100, 100, None), ("running", 100, 0, None)]


async def test_bad_input_is_refused(catalog: Catalog) -> None:
    with pytest.raises(UsageError):
        await catalog.record_revision(REPO, "main", FILES)
    with pytest.raises(UsageError):
        await catalog.record_revision(REPO, C1, [FileRecord("a", 1, "c" * 40, state="done")])
    with pytest.raises(UsageError):
        await catalog.mark_file_complete(REPO, C1, "a", "XYZ", 1)
    with pytest.raises(CatalogError, match="not in the catalog"):
        await catalog.mark_file_complete(REPO, C1, "a", SHA, 1)
    await catalog.record_revision(REPO, C1, FILES)
    with pytest.raises(CatalogError, match="no such file"):
        await catalog.mark_file_complete(REPO, C1, "missing.bin", SHA, 1)
    with pytest.raises(CatalogError):
        await catalog.mark_revision_complete(REPO, C2)


async def test_mirror_jobs_lifecycle(catalog: Catalog) -> None:
    job = await catalog.add_job(REPO, "main", ["*.json"], ["*.bin"], 3600)
    settings = (job.repo, job.revision, job.include, job.exclude, job.every)
    assert settings == (REPO, "main", ("*.json",), ("*.bin",), 3600)
    assert (job.status, job.bytes_done, job.bytes_total, job.commit, job.last_sync, job.next_sync, job.error) == (
        "queued", 0, 0, None, None, None, None)
    once = await catalog.add_job(OTHER)
    assert [j.repo for j in await catalog.list_jobs()] == [OTHER, REPO]  # datasets sort before models
    assert once.every is None and once.include == ()

    lease = await catalog.lease_job("r1", 30)  # queued jobs in the order they were added
    assert lease is not None and (lease.job.id, lease.job.status, lease.fence) == (job.id, "running", 1)
    lease = await catalog.lease_job("r1", 30)
    assert lease is not None and lease.job.id == once.id and lease.fence == 1
    assert await catalog.lease_job("r2", 30) is None  # one worker per job
    assert await catalog.set_job_progress(job.id, 1, 40, 100)
    running = await catalog.job(REPO)
    assert running is not None and (running.status, running.bytes_done, running.bytes_total) == ("running", 40, 100)
    assert running.lease_until is not None and running.lease_until > utcnow() + timedelta(seconds=25)
    assert await catalog.queue_jobs(REPO) == 1  # a running job is left running
    assert (await catalog.job(REPO)).status == "running"  # type: ignore[union-attr]
    assert await catalog.finish_job(job.id, 1, C1)
    done = await catalog.job(REPO)
    assert done is not None and (done.status, done.commit, done.error, done.lease_until) == ("done", C1, None, None)
    assert done.last_sync is not None and done.last_sync.tzinfo is not None
    assert done.next_sync is not None and timedelta(minutes=59) < done.next_sync - done.last_sync <= timedelta(hours=1)

    assert await catalog.fail_job(once.id, 1, "connection reset\nTraceback...")
    failed = await catalog.job(OTHER)
    assert failed is not None
    assert (failed.status, failed.error, failed.next_sync) == ("failed", "connection reset", None)
    assert await catalog.queue_jobs() == 2
    assert {j.status for j in await catalog.list_jobs()} == {"queued"}

    again = await catalog.add_job(REPO, "v1", every=None)  # the same repo again: new settings, progress kept
    assert (again.id, again.revision, again.include, again.every, again.commit) == (job.id, "v1", (), None, C1)
    await catalog.remove_job(OTHER)
    lease = await catalog.lease_job("r1", 30)
    assert lease is not None and lease.fence == 2 and await catalog.release_job(again.id, 2)
    assert (await catalog.job(REPO)).status == "queued"  # type: ignore[union-attr]
    assert not await catalog.release_job(again.id, 2)  # released already

    assert await catalog.remove_job(REPO) is True
    assert await catalog.remove_job(REPO) is False
    assert await catalog.job(REPO) is None
    assert not await catalog.set_job_progress(job.id, 2, 1, 2)  # a worker outliving its job changes nothing
    assert await catalog.list_jobs() == []
    await catalog.add_job(OTHER)
    assert await catalog.remove_repo(OTHER) and await catalog.list_jobs() == []  # jobs go with their repo


async def test_convert_jobs_lifecycle(catalog: Catalog) -> None:
    job, new = await catalog.start_convert_job(REPO, C1, "Q8_0")
    assert new and (job.repo, job.commit, job.quant, job.status, job.name) == (REPO, C1, "Q8_0", "running", None)
    assert len(job.id) == 16 and await catalog.convert_job(job.id) == job
    same, new = await catalog.start_convert_job(REPO, C1, "Q8_0")  # asked again while it runs: the same job
    assert same == job and not new
    other, new = await catalog.start_convert_job(REPO, C1, "Q4_K_M")
    assert new and other.id != job.id
    await catalog.finish_convert_job(job.id, "model-Q8_0.gguf", SHA, 1234)
    done = await catalog.convert_job(job.id)
    assert done is not None and (done.status, done.name, done.sha256, done.size) == ("complete", "model-Q8_0.gguf",
                                                                                     SHA, 1234)
    assert await catalog.start_convert_job(REPO, C1, "Q8_0") == (done, False)  # finished: still the same job
    await catalog.fail_convert_job(job.id, "too late")  # only a running job can fail
    assert await catalog.convert_job(job.id) == done

    assert await catalog.fail_running_convert_jobs("the daemon stopped\nTraceback...") == 1
    failed = await catalog.convert_job(other.id)
    assert failed is not None and (failed.status, failed.error) == ("failed", "the daemon stopped")
    again, new = await catalog.start_convert_job(REPO, C1, "Q4_K_M")  # a failed job is started anew
    assert new and again.id != other.id and (await catalog.convert_job(other.id)) == failed
    assert await catalog.convert_job("0123456789abcdef") is None
    with pytest.raises(UsageError):
        await catalog.start_convert_job(REPO, "main", "Q8_0")
    assert await catalog.remove_repo(REPO) and await catalog.convert_job(again.id) is None  # jobs go with their repo


@pytest.mark.parametrize("settings", [
    {"revision": ""}, {"include": [""]}, {"exclude": [3]}, {"every": 0}, {"every": -5}, {"every": float("nan")},
    {"every": True}, {"every": "6h"},
])
async def test_bad_job_settings_are_refused(catalog: Catalog, settings: dict) -> None:
    with pytest.raises(UsageError):
        await catalog.add_job(REPO, **settings)
    assert await catalog.list_jobs() == []


@pytest.mark.parametrize(
    "make_url",
    [
        lambda tmp: url_for(Path("/proc/mreg-no-such-dir/catalog.db")),  # a folder that cannot be created
        lambda tmp: url_for(tmp / "a-file" / "catalog.db"),  # a parent that is a file
        lambda tmp: url_for(tmp),  # a folder, not a database file
        lambda tmp: f"sqlite:///{tmp / 'sync-driver.db'}",  # not an async driver
        lambda tmp: "nonsense",
        lambda tmp: "nosuchdb+nodriver://host/db",
        lambda tmp: "postgresql+nodriver://host/db",
        lambda tmp: "postgresql+asyncpg://mreg:secret@127.0.0.1:1/catalog",  # nothing listens
    ],
)
async def test_unusable_urls_give_catalog_error(tmp_path: Path, make_url) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(CatalogError) as info:
        await Catalog.open(make_url(tmp_path))
    assert "\n" not in str(info.value) and "secret" not in str(info.value)


async def test_a_postgresql_database_that_does_not_exist_gives_catalog_error(pg_url: str) -> None:
    with pytest.raises(CatalogError, match="does not exist") as info:
        await Catalog.open(pg_url.rsplit("/", 1)[0] + "/no_such_database")
    assert "\n" not in str(info.value)


async def test_mreg_database_url_at_a_non_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere" / "deep" / "my catalog.db"
    settings = Settings.from_env({"MREG_HOME": str(tmp_path / "home"), "MREG_DATABASE_URL": url_for(elsewhere)})
    cat = await Catalog.open(settings.database_url)
    await cat.record_revision(REPO, C1, FILES, ref="main")
    await cat.close()
    assert elsewhere.is_file() and not (tmp_path / "home").exists()
    monkeypatch.chdir(tmp_path)
    cat = await Catalog.open("sqlite+aiosqlite:///relative/catalog.db")  # relative to the working folder
    await cat.close()
    assert (tmp_path / "relative" / "catalog.db").is_file()
    default = Settings.from_env({"MREG_HOME": str(tmp_path / "home2")})
    cat = await Catalog.open(default.database_url)
    await cat.close()
    assert (tmp_path / "home2" / "catalog.db").is_file()


def test_schema_head_constant_matches_the_migrations() -> None:
    from mreg.migrations import SCHEMA_HEAD

    assert SCHEMA_HEAD == head()


async def test_a_cancelled_write_neither_holds_the_lock_nor_is_lost(catalog: Catalog) -> None:
    await catalog.record_revision(REPO, C1, FILES)
    for ticks in range(6):  # cancel the caller at different points of its transaction
        writer = asyncio.ensure_future(catalog.mark_file_complete(REPO, C1, "config.json", SHA, 10))
        for _ in range(ticks):
            await asyncio.sleep(0)
        writer.cancel()
        await asyncio.wait_for(catalog.set_ref(REPO, f"ref{ticks}", C1), timeout=5)
    await asyncio.wait_for(catalog.mark_file_complete(REPO, C1, "model.safetensors", SHA, 1000), timeout=5)
    states = {f.path: f.state for f in await catalog.revision_files(REPO, C1)}
    assert states == {"config.json": "complete", "model.safetensors": "complete"}
