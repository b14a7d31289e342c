"""`mreg`'s quick commands import only what they need: the modules a real `mreg` process loaded are
counted (sys.modules at exit), not timed. bench/startup_bench.py times them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mreg.registry.catalog import Catalog, FileRecord, RepoSummary
from mreg.registry.catalog.listing import read_sqlite
from mreg.registry.config import Settings
from mreg.registry.local_refs import stored_commit
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

from mreg.cli.main import COMMANDS, main

HEAVY = ("aiohttp", "sqlalchemy", "alembic", "numpy", "mreg.daemon", "asyncpg")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROBE = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["MREG_PROBE_OUT"], "w").write(json.dumps(sorted(sys.modules))))
from mreg.cli.main import main
main()
"""


def run_mreg(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`mreg ARGS` in a fresh interpreter with MREG_HOME=home: (the run, the heavy packages it imported)."""
    out = home.parent / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MREG_"))}
    env.update(MREG_HOME=str(home), MREG_PROBE_OUT=str(out))
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=120)
    loaded = json.loads(out.read_text())
    return done, {h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in loaded)}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A store holding org/a with ref main → COMMIT (a snapshot folder, as a pull leaves it)."""
    store = Store(tmp_path / "home")
    repo = RepoRef.parse("org/a")
    store.write_ref(repo, "main", COMMIT)
    store.snapshot_dir(repo, COMMIT).mkdir(parents=True)
    return store.home


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["path", "org/a"], ["path", "org/a", "--revision",
                                                                                   COMMIT[:7]]])
def test_quick_commands_import_no_http_database_numpy_or_daemon(home: Path, args: list[str]) -> None:
    done, heavy = run_mreg(home, *args)
    assert done.returncode == 0, done.stderr
    assert heavy == set()
    if args[0] == "path":
        assert done.stdout.strip() == str(home / "hub" / "models--org--a" / "snapshots" / COMMIT)


async def _catalog_with_repos(home: Path) -> list[RepoSummary]:
    """org/a: an old complete revision and a newer partial one (ls shows the complete one), org/b: one file,
    pending; what ``Catalog.list_repos`` says of them."""
    catalog = await Catalog.open(Settings.from_env({"MREG_HOME": str(home)}).database_url)
    try:
        a, b, newer = RepoRef.parse("org/a"), RepoRef.parse("org/b"), "f" * 40
        await catalog.record_revision(a, COMMIT, [FileRecord("x.bin", 3, "1" * 40), FileRecord("y.bin", 5, "2" * 40)])
        await catalog.mark_file_complete(a, COMMIT, "x.bin", "a" * 64, 3)
        await catalog.mark_revision_complete(a, COMMIT)
        await catalog.record_revision(a, newer, [FileRecord("x.bin", 4, "3" * 40)])
        await catalog.set_ref(a, "main", newer)
        await catalog.set_ref(a, "v1", COMMIT)
        await catalog.record_revision(b, COMMIT, [FileRecord("z.bin", 7, "4" * 40)])
        return await catalog.list_repos()
    finally:
        await catalog.close()


async def test_ls_reads_the_embedded_catalog_without_sqlalchemy_and_says_what_the_catalog_says(home: Path) -> None:
    expected = await _catalog_with_repos(home)
    done, heavy = run_mreg(home, "ls", "--json")
    assert done.returncode == 0, done.stderr
    assert heavy == set()
    shown = json.loads(done.stdout)
    assert [(r["repo"], r["commit"], r["refs"], r["files"], r["size"], r["complete"], r["updated_at"]) for r in shown] == [
        (s.repo.repo_id, s.commit, list(s.refs), s.files, s.size, s.complete, s.updated_at.isoformat()) for s in expected]
    assert [(s.repo.repo_id, s.commit, s.refs, s.files, s.stored_files, s.complete) for s in expected] == [
        ("org/a", COMMIT, ("v1",), 2, 1, True), ("org/b", COMMIT, (), 1, 0, False)]


def test_ls_opens_the_catalog_when_it_is_not_at_the_schema_head(home: Path) -> None:
    done, heavy = run_mreg(home, "ls")  # no catalog yet: the Catalog creates it at head (no Alembic)
    assert done.returncode == 0 and "no repos in the store" in done.stderr
    assert heavy == {"sqlalchemy"}
    assert read_sqlite(home / "catalog.db") == []


def test_path_asks_the_catalog_what_the_store_cannot_tell(home: Path) -> None:
    done, heavy = run_mreg(home, "path", "org/other")
    assert done.returncode == 2 and done.stderr == "mreg: error: org/other@main is not in the local store (pull it first)\n"
    assert "sqlalchemy" in heavy


def test_stored_commit_reads_refs_and_snapshot_prefixes(home: Path) -> None:
    store, repo = Store(home), RepoRef.parse("org/a")
    other = "01234567" + "f" * 32
    assert stored_commit(store, repo, "main") == stored_commit(store, repo, COMMIT.upper()[:9]) == COMMIT
    store.snapshot_dir(repo, other).mkdir()
    assert stored_commit(store, repo, COMMIT[:8]) is None  # ambiguous: both start 01234567
    assert stored_commit(store, repo, COMMIT[:9]) == COMMIT and stored_commit(store, repo, other) == other
    for unknown in ("dev", "012345", "../main", "0123456789abcdeg", ""):
        assert stored_commit(store, repo, unknown) is None
    assert stored_commit(store, RepoRef.parse("org/b"), COMMIT[:7]) is None


def test_the_help_summaries_are_the_commands_own() -> None:
    for name, lazy in COMMANDS.items():
        command = lazy.load()
        assert command.name == name and command.get_short_help_str(1000) == lazy.summary, name
    assert main.list_commands(click.Context(main)) == sorted(COMMANDS)


def test_a_command_is_imported_with_the_collector_paused_then_frozen_out_of_it() -> None:
    """What `mreg pull`'s import builds lives to the end: no collection walks it (issue #16: ~0.3 s of CPU)."""
    probe = ("import gc; from mreg.cli.main import COMMANDS; COMMANDS['pull'].load(); "
             "print(gc.get_freeze_count(), gc.isenabled())")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    frozen, enabled = done.stdout.split()
    assert int(frozen) > 30_000 and enabled == "True"  # aiohttp and the rest: ~54,000 objects


def test_the_pull_command_leaves_sqlalchemy_to_the_pull_that_opens_the_catalog() -> None:
    """`mreg pull` imports the catalog (SQLAlchemy) once the bytes of the files it fetched first are in
    (registry.local.CatalogOnDemand, tests/test_pull_on_demand.py), so its command module must not."""
    probe = ("import json, sys; from mreg.cli.main import COMMANDS; COMMANDS['pull'].load(); "
             "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(done.stdout)
    assert "aiohttp" in loaded and not [m for m in loaded if m == "sqlalchemy" or m.startswith("sqlalchemy.")]
