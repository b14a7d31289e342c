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

from mreg.registry.local_refs import stored_commit
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

from mreg.cli.main import COMMANDS, main

HEAVY = ("aiohttp", "sqlalchemy", "numpy", "mreg.daemon")
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


def test_ls_loads_the_catalog_but_no_http_numpy_or_daemon(home: Path) -> None:
    done, heavy = run_mreg(home, "ls")
    assert done.returncode == 0, done.stderr
    assert heavy == {"sqlalchemy"}


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
