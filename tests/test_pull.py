"""`registry.pull` against the test hub: exact bytes, selection, errors, faults, resume."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from mreg.registry.errors import (
    EntryNotFoundError,
    GatedRepoError,
    IntegrityError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnsafePathError,
    UpstreamUnavailableError,
    UsageError,
)
from mreg.registry.download.holes import punch_hole
from mreg.registry.download.job import READ_SIZE
from mreg.registry.download.state import TransferState
from mreg.registry.pull import NullProgress
from mreg.registry.store import Store
from tests.pulling import pull_repo, tree_bytes, with_connections
from tests.testhub import TestHub, dataset_repo, minilm_repo, small_repo

MiB = 1024 * 1024
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


def expected_tree(hub: TestHub, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
    head = hub.repo(repo_id, repo_type).head
    return {path: entry.blob.read(0, entry.blob.size) for path, entry in head.files.items()}


async def test_pull_minilm_gives_exact_bytes_and_hf_cache_layout(test_hub: TestHub, tmp_path: Path) -> None:
    result = await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    head = test_hub.repo(MINILM).head
    assert result.commit == head.sha
    assert result.path == tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / head.sha
    assert tree_bytes(result.path) == expected_tree(test_hub, MINILM)
    assert (result.path / "1_Pooling" / "config.json").is_symlink()
    assert (tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "refs" / "main").read_text() == head.sha
    model = result.path / "model.safetensors"
    assert {f.path: f.sha256 for f in result.files}["model.safetensors"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert test_hub.stats.cdn_authorization_seen == []


async def test_second_pull_moves_no_bytes_and_blobs_are_shared(test_hub: TestHub, tmp_path: Path) -> None:
    first = await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    assert first.fetched == sum(len(b) for b in expected_tree(test_hub, MINILM).values())
    cdn_before = test_hub.stats.cdn_bytes
    second = await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    assert second.fetched == 0 and test_hub.stats.cdn_bytes == cdn_before
    # The same weights under another repo id come through that repo's upstream (#14.4), and are stored once.
    test_hub.add_repo(minilm_repo("someone/minilm-copy"))
    third = await pull_repo(test_hub.endpoint, tmp_path, "someone/minilm-copy")
    weights = test_hub.repo(MINILM).head.files["model.safetensors"].blob
    assert third.fetched == first.fetched and test_hub.stats.cdn_bytes == cdn_before + weights.size
    again = await pull_repo(test_hub.endpoint, tmp_path, "someone/minilm-copy")
    assert again.fetched == 0  # stored for that repo now
    blobs = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == len({hashlib.sha256(p.read_bytes()).hexdigest() for p in blobs})


async def test_new_revision_fetches_only_changed_files(test_hub: TestHub, tmp_path: Path) -> None:
    repo = test_hub.add_repo(small_repo())
    await pull_repo(test_hub.endpoint, tmp_path, repo.repo_id)
    repo.commit({"config.json": '{"model_type": "tiny", "hidden_size": 16}\n'})
    resolve_before = test_hub.stats.resolve_bytes
    result = await pull_repo(test_hub.endpoint, tmp_path, repo.repo_id)
    assert result.fetched == len('{"model_type": "tiny", "hidden_size": 16}\n')
    assert test_hub.stats.resolve_bytes - resolve_before == result.fetched
    assert tree_bytes(result.path) == expected_tree(test_hub, repo.repo_id)


async def test_gguf_pull(test_hub: TestHub, tmp_path: Path) -> None:
    result = await pull_repo(test_hub.endpoint, tmp_path, SMOLLM, include=("*.gguf",))
    assert [f.path for f in result.files] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert tree_bytes(result.path) == {k: v for k, v in expected_tree(test_hub, SMOLLM).items() if k.endswith(".gguf")}


async def test_tree_pagination_beyond_one_page(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.tree_page_size = 3
    result = await pull_repo(test_hub.endpoint, tmp_path, MINILM, exclude=("*.safetensors",))
    assert len(result.files) == len(expected_tree(test_hub, MINILM)) - 1
    assert len([r for r in test_hub.stats.find(path_contains="/tree/")]) >= 4


async def test_include_exclude_and_local_dir(test_hub: TestHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = await pull_repo(test_hub.endpoint, tmp_path / "home", MINILM, include=("*.json", "1_Pooling/"),
                             exclude=("tokenizer*",), local_dir=out)
    expected = {k: v for k, v in expected_tree(test_hub, MINILM).items()
                if (k.endswith(".json") or k.startswith("1_Pooling/")) and not k.startswith("tokenizer")}
    assert result.path == out
    assert tree_bytes(out) == expected
    assert all(not p.is_symlink() for p in out.rglob("*"))
    assert "1_Pooling/config.json" in expected


async def test_dataset_repo(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.add_repo(dataset_repo())
    result = await pull_repo(test_hub.endpoint, tmp_path, "testorg/tiny-dataset", repo_type="dataset")
    assert "datasets--testorg--tiny-dataset" in str(result.path)
    assert tree_bytes(result.path) == expected_tree(test_hub, "testorg/tiny-dataset", "dataset")
    with pytest.raises(RepoNotFoundError):
        await pull_repo(test_hub.endpoint, tmp_path, "testorg/tiny-dataset")


async def test_revisions_tags_and_commits(test_hub: TestHub, tmp_path: Path) -> None:
    repo = test_hub.add_repo(small_repo())
    first = repo.head.sha
    repo.tag("v1")
    repo.commit({"config.json": '{"model_type": "tiny", "hidden_size": 16}\n'})
    old = await pull_repo(test_hub.endpoint, tmp_path, "testorg/tiny-model", revision="v1")
    assert old.commit == first
    assert b'"hidden_size": 8' in (old.path / "config.json").read_bytes()
    new = await pull_repo(test_hub.endpoint, tmp_path, "testorg/tiny-model", revision=repo.head.sha)
    assert b'"hidden_size": 16' in (new.path / "config.json").read_bytes()
    with pytest.raises(RevisionNotFoundError, match="nope"):
        await pull_repo(test_hub.endpoint, tmp_path, "testorg/tiny-model", revision="nope")
    with pytest.raises(RepoNotFoundError, match="testorg/missing"):
        await pull_repo(test_hub.endpoint, tmp_path, "testorg/missing")


async def test_a_listing_naming_a_gated_repos_hash_gets_its_bytes_only_through_its_own_upstream(
        test_hub: TestHub, tmp_path: Path) -> None:
    """#14.4 for `mreg pull`: a repo whose listing names the hash of a gated repo's stored file is not linked
    to that blob: its bytes must come (verified) through its own upstream; if they cannot, the pull fails and
    neither its snapshot nor the catalog (which the daemon serves from) gets the gated bytes."""
    gated = test_hub.add_repo(small_repo("org/gated", gated="manual", allowed_users={"alice"}))
    weights = gated.head.files["weights.bin"].blob
    await pull_repo(test_hub.endpoint, tmp_path, "org/gated", token="hf_test_alice")
    test_hub.add_repo(small_repo("org/copycat", files={"weights.bin": weights}))
    test_hub.add_repo(small_repo("org/liar", files={"weights.bin": weights}))
    test_hub.stats.reset()
    copied = await pull_repo(test_hub.endpoint, tmp_path, "org/copycat")
    assert copied.fetched == weights.size and test_hub.stats.bytes_by_sha256[weights.sha256] == weights.size
    assert (copied.path / "weights.bin").read_bytes() == weights.read()
    test_hub.faults.corrupt(weights.sha256)  # the liar's upstream cannot deliver those bytes
    with pytest.raises(IntegrityError):
        await pull_repo(test_hub.endpoint, tmp_path, "org/liar")
    snapshots = tmp_path / "hub" / "models--org--liar" / "snapshots"
    assert not any(p.name == "weights.bin" for p in snapshots.rglob("*"))


async def test_gated_repo_needs_an_approved_token(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.add_repo(small_repo("org/gated", gated="manual", allowed_users={"alice"}))
    with pytest.raises(GatedRepoError, match="request access"):
        await pull_repo(test_hub.endpoint, tmp_path, "org/gated")
    with pytest.raises(GatedRepoError, match="not approved"):
        await pull_repo(test_hub.endpoint, tmp_path, "org/gated", token="hf_test_bob")
    result = await pull_repo(test_hub.endpoint, tmp_path, "org/gated", token="hf_test_alice")
    assert tree_bytes(result.path) == expected_tree(test_hub, "org/gated")
    assert test_hub.stats.cdn_authorization_seen == []


async def test_private_repo_and_refused_token(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.add_repo(small_repo("owner/private", private=True))
    with pytest.raises(RepoNotFoundError, match="private"):
        await pull_repo(test_hub.endpoint, tmp_path, "owner/private")
    result = await pull_repo(test_hub.endpoint, tmp_path, "owner/private", token="hf_test_owner")
    assert result.files
    with pytest.raises(Exception, match="refused the token"):
        await pull_repo(test_hub.endpoint, tmp_path, "owner/private", token="hf_wrong")


async def test_wrong_sha256_is_never_published(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.faults.corrupt("model.safetensors")
    with pytest.raises(IntegrityError, match="model.safetensors: sha256 mismatch"):
        await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    lfs_sha = test_hub.repo(MINILM).head.files["model.safetensors"].blob.sha256
    assert not (tmp_path / "blobs" / "sha256" / lfs_sha[:2] / lfs_sha).exists()
    assert not list((tmp_path / "hub").rglob("model.safetensors"))
    assert not list((tmp_path / "partial").glob(f"{lfs_sha}*"))
    test_hub.faults.reset()
    result = await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    assert tree_bytes(result.path) == expected_tree(test_hub, MINILM)


async def test_a_transfer_corrupted_once_is_fetched_again(test_hub: TestHub, tmp_path: Path) -> None:
    """#14.9: one corrupt transfer costs one more fetch of that file, not the pull; twice fails as before."""
    blob = test_hub.repo(MINILM).head.files["model.safetensors"].blob
    test_hub.faults.corrupt("model.safetensors", count=1)
    result = await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    assert tree_bytes(result.path) == expected_tree(test_hub, MINILM)
    assert result.refetched == ("model.safetensors",)
    assert test_hub.stats.bytes_by_sha256[blob.sha256] == 2 * blob.size  # the file again, nothing else
    test_hub.faults.corrupt("config.json", count=2)
    with pytest.raises(IntegrityError, match=r"config.json: git sha1 mismatch .*\(fetched twice\)"):
        await pull_repo(test_hub.endpoint, tmp_path / "again", MINILM, include=("config.json",))


async def test_wrong_git_sha1_is_never_published(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.faults.corrupt("config.json")
    with pytest.raises(IntegrityError, match="config.json: git sha1 mismatch"):
        await pull_repo(test_hub.endpoint, tmp_path, MINILM, include=("config.json",))
    assert not list((tmp_path / "hub").rglob("config.json"))


@pytest.mark.parametrize("hostile", ["../evil.txt", "/tmp/mreg-evil-abs.txt", "a/../../evil.txt", "a\\..\\evil.txt"])
async def test_traversal_names_never_write_outside(test_hub: TestHub, tmp_path: Path, hostile: str) -> None:
    repo = test_hub.add_repo(small_repo("org/hostile"))
    repo.commit({hostile: b"pwned"}, unsafe_paths=True)
    home = tmp_path / "home"
    with pytest.raises(UnsafePathError, match="unsafe file name"):
        await pull_repo(test_hub.endpoint, home, "org/hostile", local_dir=tmp_path / "out")
    assert not any(p.read_bytes() == b"pwned" for p in tmp_path.rglob("*") if p.is_file())
    assert not Path("/tmp/mreg-evil-abs.txt").exists()


async def test_cut_bodies_503_and_429_under_load(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.add_repo(dataset_repo())
    test_hub.faults.cut_body(500_000, count=4, route="cdn")
    test_hub.faults.cut_body(1000, count=1, route="resolve")
    test_hub.faults.fail(503, count=3, route="cdn")
    test_hub.faults.fail(503, count=2, route="resolve")
    test_hub.faults.fail(429, count=2, route="api", retry_after=1)
    minilm = await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    smollm = await pull_repo(test_hub.endpoint, tmp_path, SMOLLM)
    assert tree_bytes(minilm.path) == expected_tree(test_hub, MINILM)
    assert tree_bytes(smollm.path) == expected_tree(test_hub, SMOLLM)
    statuses = [r.status for r in test_hub.stats.records]
    assert statuses.count(503) == 5 and statuses.count(429) == 2


async def test_persistent_outage_is_a_clear_error(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.faults.fail(503, count=None, route="api")
    with pytest.raises(UpstreamUnavailableError, match="failed after 6 attempts \\(HTTP 503\\)"):
        await pull_repo(test_hub.endpoint, tmp_path, MINILM)


async def test_stalled_connection_is_abandoned_and_resumed(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.faults.stall(2_000_000, seconds=30, count=1, route="cdn")
    result = await pull_repo(test_hub.endpoint, tmp_path, SMOLLM)
    assert tree_bytes(result.path) == expected_tree(test_hub, SMOLLM)


async def test_expired_signed_url_is_resolved_again(test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.faults.url_ttl = 1
    test_hub.faults.throttle = 5_000_000  # 8 connections x 5 MB/s: the 98 MB file outlives its URL
    result = await pull_repo(test_hub.endpoint, tmp_path, SMOLLM, include=("*.gguf",))
    assert tree_bytes(result.path) == {k: v for k, v in expected_tree(test_hub, SMOLLM).items() if k.endswith(".gguf")}
    assert any(r.status == 403 for r in test_hub.stats.records)
    assert len(test_hub.stats.find(method="HEAD", path_contains="/resolve/")) >= 2


async def test_missing_file_entry(test_hub: TestHub, tmp_path: Path) -> None:
    repo = test_hub.add_repo(small_repo())
    test_hub.faults.fail(404, count=None, route="resolve")
    with pytest.raises(EntryNotFoundError):
        await pull_repo(test_hub.endpoint, tmp_path, repo.repo_id)


async def test_offline_serves_the_store_and_refuses_unknown(test_hub: TestHub, tmp_path: Path) -> None:
    pulled = await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    test_hub.stop()
    offline = await pull_repo(test_hub.endpoint, tmp_path, MINILM, offline=True)
    assert offline.path == pulled.path and offline.source == "local"
    unreachable = await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    assert unreachable.source == "local" and unreachable.commit == pulled.commit
    with pytest.raises(UsageError, match="not in the local store"):
        await pull_repo(test_hub.endpoint, tmp_path, SMOLLM, offline=True)


async def test_huggingface_hub_reads_mreg_snapshots(test_hub: TestHub, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    result = await pull_repo(test_hub.endpoint, tmp_path, MINILM)
    from huggingface_hub import snapshot_download

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = snapshot_download(MINILM, cache_dir=tmp_path / "hub", local_files_only=True)
    assert Path(found) == result.path
    assert os.path.getsize(Path(found) / "model.safetensors") == 90868376


class _Chunks(NullProgress):
    """The sizes of the pieces a pull reported, one per body read."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def advance(self, path: str, nbytes: int) -> None:
        self.sizes.append(nbytes)


async def test_a_body_is_read_in_pieces_larger_than_asyncios_default(test_hub: TestHub, tmp_path: Path) -> None:
    """A loop turn per 256 KiB (asyncio's read size) was a third of a pull's Python CPU: reads take up to READ_SIZE."""
    big = random.Random(1).randbytes(24 * 1024 * 1024)
    test_hub.add_repo(small_repo("testorg/big-reads", {"big.bin": big}))
    chunks = _Chunks()
    result = await pull_repo(test_hub.endpoint, tmp_path, "testorg/big-reads", tuning=with_connections(1),
                             progress=chunks)
    assert (result.path / "big.bin").read_bytes() == big
    assert sum(chunks.sizes) == len(big)
    assert 256 * 1024 < max(chunks.sizes) <= READ_SIZE


async def test_a_partial_file_whose_bytes_were_freed_is_resumed_by_fetching_them(test_hub: TestHub,
                                                                                  tmp_path: Path) -> None:
    """A shared fill frees the bytes the bucket holds from its partial file (#13) after saving its state; a kill -9
    leaves both behind. A lone download resuming that file fetches the freed range again, not the whole file
    after hashing the zeros."""
    data = random.Random(13).randbytes(24 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    test_hub.add_repo(small_repo("testorg/freed", {"big.bin": data}))
    data_path, state_path = Store(tmp_path).partial_paths(sha)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    data_path.write_bytes(data)
    state = TransferState.plan(len(data), sha, 4 * MiB)
    for part in state.parts:
        part.done = part.size  # every byte written, as the fill saved it
    state.save(state_path)
    fd = os.open(data_path, os.O_RDWR)
    try:
        punch_hole(fd, 4 * MiB, 8 * MiB)  # then freed [4, 12) MiB
    finally:
        os.close(fd)
    result = await pull_repo(test_hub.endpoint, tmp_path, "testorg/freed")
    assert (result.path / "big.bin").read_bytes() == data
    assert result.refetched == ()
    assert test_hub.stats.bytes_by_sha256[sha] == 8 * MiB  # the freed bytes, nothing else
