"""The size budget: the pure eviction policy, then `mreg gc --max-size`, `mreg pin` and `mreg ls` on
real stores filled from the test hub, and a kill -9 in the middle of an eviction."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mreg.registry.catalog import Catalog, FileRecord, RevisionUse
from mreg.registry.errors import UsageError
from mreg.registry.eviction.policy import Budget, plan
from mreg.registry.maintenance import verify
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

from tests.mreg_cli import mreg
from tests.testhub import HubRepo, TestHub

pytest_plugins = ("tests.mreg_env",)

NOW = datetime(2026, 12, 3, tzinfo=timezone.utc)
MB = 1_000_000


def rev(name: str, days_ago: float, blobs: dict[str, int], pinned: bool = False, mirrored: bool = False) -> RevisionUse:
    return RevisionUse(RepoRef.parse(f"org/{name}"), name[0] * 40, NOW - timedelta(days=days_ago), pinned, mirrored,
                       blobs)


# -- the policy -------------------------------------------------------------------------------------------------------

def test_watermarks_and_the_free_disk_floor_say_how_much_to_free() -> None:
    budget = Budget(max_size=1000, min_free=300)
    assert budget.bytes_to_free(stored=950, free=500) == 0  # at the high mark, not past it
    assert budget.bytes_to_free(stored=951, free=500) == 951 - 850  # down to the low mark
    assert budget.bytes_to_free(stored=500, free=100) == 200  # the disk is filling for other reasons
    assert Budget.parse("300MB", 90, 50, "1G", "size", "2w") == Budget(300 * MB, 0.9, 0.5, 10**9, "size", 14 * 86400.0)
    for bad in ({"low": 96.0}, {"order": "fifo"}, {"max_size": "-1G"}):
        with pytest.raises(UsageError):
            Budget.parse(**{"max_size": "1G", **bad})  # type: ignore[arg-type]


def test_lru_evicts_the_least_recently_used_until_enough_is_freed_and_keeps_shared_blobs() -> None:
    revisions = [rev("a", 1, {"a1": 100, "shared": 50}), rev("b", 9, {"b1": 100, "shared": 50}),
                 rev("c", 5, {"c1": 100}), rev("d", 3, {"d1": 100})]
    chosen = plan(revisions, 150, Budget(max_size=1), NOW)
    assert [(e.revision.commit[0], e.freed) for e in chosen.evictions] == [("b", 100), ("c", 100)]
    assert chosen.freed == 200 and chosen.short == 0
    everything = plan(revisions, 10**9, Budget(max_size=1), NOW)
    assert [(e.revision.commit[0], e.freed) for e in everything.evictions] == [("b", 100), ("c", 100), ("d", 100),
                                                                               ("a", 150)]


def test_pinned_mirrored_and_in_use_revisions_never_go_and_a_short_budget_says_so() -> None:
    revisions = [rev("a", 9, {"a1": 100}, pinned=True), rev("b", 8, {"b1": 100}, mirrored=True),
                 rev("c", 7, {"c1": 100}), rev("d", 1, {"d1": 100, "a1": 100})]
    chosen = plan(revisions, 10**6, Budget(max_size=1), NOW, busy={(RepoRef.parse("org/c"), "c" * 40)})
    assert [(e.revision.commit[0], e.freed) for e in chosen.evictions] == [("d", 100)]  # a1 stays with pinned a
    assert chosen.kept_bytes == 300 and chosen.short == 10**6 - 100


def test_size_evicts_the_largest_first_and_age_only_what_is_stale() -> None:
    revisions = [rev("a", 40, {"a1": 10}), rev("b", 1, {"b1": 500}), rev("c", 31, {"c1": 200}),
                 rev("d", 29, {"d1": 300})]
    assert [e.revision.commit[0] for e in plan(revisions, 600, Budget(max_size=1, order="size"), NOW).evictions] == [
        "b", "d"]
    aged = plan(revisions, 0, Budget(order="age", evict_after=30 * 86400.0), NOW)
    assert [(e.revision.commit[0], e.why) for e in aged.evictions] == [("a", "unused for 30 days"),
                                                                       ("c", "unused for 30 days")]


# -- gc --max-size, pin and ls on a real store ------------------------------------------------------------------------

def _add_repos(test_hub: TestHub) -> None:
    """org/r0 … org/r4, each with its own 2 MB weights; r0 and r3 share a 1 MB file."""
    shared = os.urandom(MB)
    for i in range(5):
        files = {"config.json": json.dumps({"n": i}).encode(), "model.bin": os.urandom(2 * MB)}
        if i in (0, 3):
            files["shared.bin"] = shared
        test_hub.add_repo(HubRepo(f"org/r{i}")).commit(files)


def _ls() -> dict[str, dict]:
    code, out, err = mreg("ls", "--json")
    assert code == 0, err
    return {r["repo"]: r for r in json.loads(out)}


def test_gc_with_a_budget_evicts_least_recently_used_revisions_and_spares_pinned_and_mirrored(
        test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    _add_repos(test_hub)
    for i in (0, 1, 2, 3, 4, 0):  # r0 pulled again last: the most recently used
        code, _, err = mreg("pull", f"org/r{i}")
        assert code == 0, err
    assert mreg("pin", "org/r1")[1] == "pinned org/r1\n"
    assert mreg("pin", "org/r1")[1] == "already pinned org/r1\n"
    asyncio.run(_add_mirror_job(Path(mreg_env["MREG_HOME"]), RepoRef.parse("org/r2")))
    before = _ls()
    assert before["org/r0"]["last_used"] > before["org/r4"]["last_used"] > before["org/r3"]["last_used"]
    assert (before["org/r1"]["pinned"], before["org/r2"]["mirrored"], before["org/r3"]["pinned"]) == (True, True, False)

    # ~11 MB stored against a 10 MB budget: past 95 %, so down to 8.5 MB; r3 frees 2 MB (its shared file stays
    # with r0), r4 2 MB more
    code, out, err = mreg("gc", "--max-size", "10MB", "--dry-run", "--json")
    assert code == 0, err
    assert [e["repo"] for e in json.loads(out)["evicted"]] == ["org/r3", "org/r4"] and set(_ls()) == set(before)
    code, out, err = mreg("gc", "--max-size", "10MB", "--json")
    report = json.loads(out)
    assert code == 0 and not report["dry_run"], err
    assert [(e["repo"], e["bytes"], e["why"]) for e in report["evicted"]] == [
        ("org/r3", 2 * MB + len(b'{"n": 3}'), "least recently used"), ("org/r4", 2 * MB + len(b'{"n": 4}'),
                                                                         "least recently used")]
    assert report["stored_after"] <= 0.85 * 10 * MB and report["short"] == 0
    assert set(_ls()) == {"org/r0", "org/r1", "org/r2"}
    home = Path(mreg_env["MREG_HOME"])
    assert list((home / "hub" / "models--org--r3" / "snapshots").iterdir()) == []
    for i in (0, 1, 2):
        code, out, err = mreg("verify", f"org/r{i}")
        assert code == 0 and "verified" in out, err
    assert (home / "hub" / "models--org--r0" / "snapshots").is_dir()

    # an evicted repo is a cache miss again
    code, out, err = mreg("pull", "org/r3")
    assert code == 0, err
    snapshot = Path(out.strip().splitlines()[-1])
    assert (snapshot / "model.bin").read_bytes() == test_hub.repo("org/r3").head.files["model.bin"].blob.read()

    # nothing more to do under the budget; unpinned, r1 can go
    assert json.loads(mreg("gc", "--max-size", "100MB", "--json")[1])["evicted"] == []
    assert mreg("unpin", "org/r1")[1] == "unpinned org/r1\n"
    code, _, err = mreg("unpin", "org/r1")
    assert code == 2 and "org/r1 is not pinned" in err


async def _add_mirror_job(home: Path, repo: RepoRef) -> None:
    catalog = await Catalog.open(f"sqlite+aiosqlite:///{home / 'catalog.db'}")
    try:
        await catalog.add_job(repo)
    finally:
        await catalog.close()


def test_a_budget_that_pinned_revisions_alone_exceed_evicts_nothing_pinned_and_warns(
        test_hub: TestHub, mreg_env: dict[str, str]) -> None:
    _add_repos(test_hub)
    for i in (0, 1):
        assert mreg("pull", f"org/r{i}")[0] == 0
    commit = _ls()["org/r0"]["commit"]
    assert mreg("pin", f"org/r0@{commit[:8]}")[1] == f"pinned org/r0@{commit[:12]}\n"
    code, out, err = mreg("gc", "--max-size", "1MB")
    assert code == 0
    assert out.splitlines()[0].startswith("evicted org/r1@") and "least recently used" in out
    assert "mreg: warning:" in err and "pinned, mirrored or in-use revisions hold 3.0 MB" in err
    assert set(_ls()) == {"org/r0"}
    pins = json.loads(mreg("pin", "--json")[1])
    assert [(p["repo"], p["revision"]) for p in pins] == [("org/r0", commit)]


# -- kill -9 in the middle of an eviction -------------------------------------------------------------------------------

async def _fill(home: Path, revisions: int, files: int) -> None:
    """A store of ``revisions`` repos with ``files`` small stored files each (one shared by all)."""
    store = Store(home)
    catalog = await Catalog.open(f"sqlite+aiosqlite:///{home / 'catalog.db'}")
    shared = os.urandom(1000)
    try:
        for r in range(revisions):
            repo, commit = RepoRef.parse(f"org/k{r}"), f"{r:040x}"
            contents = {f"f{i}.bin": os.urandom(2000) for i in range(files)} | {"shared.bin": shared}
            records = []
            for path, data in contents.items():
                tmp = store.tmp_dir / f"fill-{r}-{path}"
                tmp.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data)
                sha = hashlib.sha256(data).hexdigest()
                store.publish_blob(tmp, sha)
                store.link_file(repo, commit, path, sha)
                records.append(FileRecord(path, len(data), "0" * 40, lfs_sha256=sha, sha256=sha, state="complete"))
            await catalog.record_revision(repo, commit, records, ref="main")
            store.write_ref(repo, "main", commit)
            await catalog.mark_revision_complete(repo, commit)
    finally:
        await catalog.close()


def test_kill_9_during_an_eviction_leaves_no_snapshot_pointing_at_a_missing_blob(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    asyncio.run(_fill(home, revisions=40, files=10))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MREG_"))} | {"MREG_HOME": str(home)}
    gc = subprocess.Popen([sys.executable, "-m", "mreg.cli.main", "gc", "--max-size", "1"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while gc.poll() is None and len(list((home / "hub").glob("models--org--k*/snapshots/*"))) > 37:
            pass  # until the third revision is gone (a condition, not a delay)
        gc.send_signal(signal.SIGKILL)
    finally:
        gc.wait()
    assert gc.returncode == -signal.SIGKILL, "the eviction finished before it could be killed"
    left = list((home / "hub").glob("models--org--k*/snapshots/*"))
    assert 0 < len(left) <= 37
    for snapshot in left:
        for link in snapshot.iterdir():
            assert link.resolve().is_file(), f"{link} points at a missing blob"
    assert asyncio.run(_bad_files(home)) == []
    monkeypatch.setenv("MREG_HOME", str(home))
    code, _, err = mreg("gc", "--max-size", "1")  # the next round finishes the job
    assert code == 0, err
    assert list((home / "hub").glob("models--org--k*/snapshots/*")) == []
    assert [p for p in Store(home).blobs_dir.rglob("*") if p.is_file()] == []


async def _bad_files(home: Path) -> list[str]:
    """What ``mreg verify`` finds bad in any revision the catalog still lists."""
    store, catalog = Store(home), await Catalog.open(f"sqlite+aiosqlite:///{home / 'catalog.db'}")
    try:
        return [f"{summary.repo}: {check.path}: {check.problem}" for summary in await catalog.list_repos()
                for check in await verify(store, catalog, summary.repo, summary.commit) if not check.ok]
    finally:
        await catalog.close()


def test_the_budget_comes_from_the_option_its_variable_or_the_config_file(
        test_hub: TestHub, mreg_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _add_repos(test_hub)
    for i in (0, 1):
        assert mreg("pull", f"org/r{i}")[0] == 0  # ~5 MB
    config = tmp_path / "xdg" / "mreg" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[budget]\nmax_size = "4MB"\nlow = 50\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))

    def dry_run(*args: str) -> dict:
        code, out, err = mreg("gc", "--dry-run", "--json", *args)
        assert code == 0, err
        return json.loads(out)

    assert (dry_run()["max_size"], [e["repo"] for e in dry_run()["evicted"]]) == (4 * MB, ["org/r0", "org/r1"])
    monkeypatch.setenv("MREG_MAX_SIZE", "100MB")
    assert (dry_run()["max_size"], dry_run()["evicted"]) == (100 * MB, [])
    assert dry_run("--max-size", "4.5MB", "--low", "85")["evicted"][0]["repo"] == "org/r0"
    config.write_text("[budget]\nmax_size = [\n")
    code, _, err = mreg("gc")
    assert code == 2 and "cannot read" in err and "config.toml" in err
