"""Pulling from ModelScope (`TestModelScope`) and choosing among upstreams, with mreg's real client."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mreg.cli.main import main
from mreg.registry.errors import (
    IntegrityError,
    UnsafePathError,
    UpstreamError,
    UpstreamUnavailableError,
    UsageError,
)
from mreg.registry.upstream.modelscope import ModelScopeClient
from mreg.registry.upstream.modelscope.client import parse_file_entry
from mreg.registry.pull import PullOptions, pull
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.fallback import pull_from
from mreg.registry.upstream.health import HEALTH_FILE, Health
from mreg.registry.upstream.configured import Upstream, load, parse_upstreams, split_source
from mreg.registry.workspace import open_workspace
from tests.pulling import FAST_RETRY, FAST_TUNING, settings_for, tree_bytes
from tests.testhub import Blob, HubRepo, TestHub, TestModelScope, minilm_repo

WEIGHTS = bytes(range(256)) * 20_000
MB = 1_000_000


def tiny_repo(repo_id: str = "org/tiny", **kwargs: object) -> HubRepo:
    kwargs.setdefault("owner", repo_id.split("/")[0])
    repo = HubRepo(repo_id, **kwargs)  # type: ignore[arg-type]
    repo.commit({"README.md": "# tiny\n", "config.json": '{"model_type": "llama"}',
                 "weights/model.bin": WEIGHTS})
    return repo


def served(repo: HubRepo) -> dict[str, bytes]:
    return {path: entry.blob.read(0, entry.blob.size) for path, entry in repo.head.files.items()}


@pytest.fixture
def hubs() -> Iterator[tuple[TestHub, TestModelScope]]:
    """The Hub and ModelScope, both serving the same `org/tiny` (same bytes)."""
    repo = tiny_repo()
    with TestHub() as hub, TestModelScope(tokens={"ms_alice": "alice"}) as ms:
        hub.add_repo(repo)
        ms.add_repo(repo)
        yield hub, ms


@pytest.fixture
def env(hubs: tuple[TestHub, TestModelScope], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    hub, ms = hubs
    values = {"HF_ENDPOINT": hub.endpoint, "MODELSCOPE_ENDPOINT": ms.endpoint, "MREG_HOME": str(tmp_path / "home"),
              "XDG_CONFIG_HOME": str(tmp_path / "config"), "HF_HOME": str(tmp_path / "hf")}
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "MREG_DATABASE_URL", "HF_TOKEN_PATH",
                 "MODELSCOPE_API_TOKEN", "MREG_UPSTREAMS", "MREG_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def config(env: dict[str, str], text: str) -> None:
    path = Path(env["XDG_CONFIG_HOME"]) / "mreg" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def mreg(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# -- pulling from ModelScope ------------------------------------------------------------------


def test_pull_ms_is_byte_identical_and_sha256_verified(hubs: tuple[TestHub, TestModelScope],
                                                       env: dict[str, str]) -> None:
    hub, ms = hubs
    code, out, err = mreg("pull", "ms://org/tiny", "--json")

    assert code == 0, err
    data = json.loads(out)
    assert data["upstream"] == "modelscope"
    assert tree_bytes(Path(data["path"])) == served(ms.repo("org/tiny"))
    assert {f["path"]: f["sha256"] for f in data["files"]} == {
        p: hashlib.sha256(b).hexdigest() for p, b in served(ms.repo("org/tiny")).items()}
    assert hub.stats.requests.total() == 0  # the Hub was never asked
    code, out, err = mreg("verify", "org/tiny")
    assert code == 0, err


async def _pull_ms(ms: TestModelScope, home: Path, repo_id: str = "org/tiny", token: str | None = None,
                   **options: object):
    settings = settings_for("http://unused.invalid", home)
    async with open_workspace(settings, None, FAST_TUNING.connections, FAST_RETRY) as ws:
        client = ModelScopeClient(ws.session, ms.endpoint, token, FAST_RETRY)
        options.setdefault("tuning", FAST_TUNING)
        opts = PullOptions(**options)  # type: ignore[arg-type]
        return await pull(RepoRef.parse(repo_id), opts, client=client, store=ws.store, catalog=ws.catalog)


async def test_resume_after_a_cut_body(hubs: tuple[TestHub, TestModelScope], tmp_path: Path) -> None:
    _, ms = hubs
    await _pull_ms(ms, tmp_path, include=("*.md", "*.json"))  # a cut rule is used by the next body
    ms.faults.cut_body(100_000, route="resolve")

    result = await _pull_ms(ms, tmp_path)

    assert tree_bytes(result.path) == served(ms.repo("org/tiny"))
    ranged = [r for r in ms.stats.find(path_contains="FilePath=weights") if r.status == 206]
    assert ranged, "the cut body was resumed with a Range request"
    assert ms.stats.resolve_bytes < len(WEIGHTS) + 200_000  # resumed, not refetched whole


async def test_revisions_without_commit_ids_pin_the_listing(hubs: tuple[TestHub, TestModelScope],
                                                             tmp_path: Path) -> None:
    _, ms = hubs
    ms.commit_ids = False
    repo = ms.repo("org/tiny")

    first = await _pull_ms(ms, tmp_path)
    repo.commit({"config.json": '{"model_type": "llama", "v": 2}'})
    second = await _pull_ms(ms, tmp_path)
    again = await _pull_ms(ms, tmp_path)

    assert len(first.commit) == 40 and first.commit != repo.head.sha
    assert second.commit not in (first.commit, repo.head.sha) and again.commit == second.commit
    assert tree_bytes(second.path) == served(repo)
    assert again.fetched == 0


async def test_lfs_redirects_resume_on_the_cdn_without_the_token(hubs: tuple[TestHub, TestModelScope],
                                                                 tmp_path: Path) -> None:
    _, ms = hubs
    repo = ms.add_repo(tiny_repo("alice/secret", private=True))
    ms.redirect_lfs = True
    ms.faults.cut_body(100_000)

    result = await _pull_ms(ms, tmp_path, "alice/secret", token="ms_alice")

    assert tree_bytes(result.path) == served(repo)
    assert len(WEIGHTS) <= ms.stats.cdn_bytes <= len(WEIGHTS) + 100_000  # the cut part resumed, not refetched
    assert ms.stats.cdn_authorization_seen == [] and ms.stats.resolve_bytes < len(WEIGHTS)


async def test_resume_when_the_api_host_ignores_range(hubs: tuple[TestHub, TestModelScope], tmp_path: Path) -> None:
    _, ms = hubs
    ms.inline_ranges = False
    await _pull_ms(ms, tmp_path, include=("*.md", "*.json"))  # a cut rule is used by the next body
    ms.faults.cut_body(1_000_000, route="resolve")
    tuning = dataclasses.replace(FAST_TUNING, min_part=len(WEIGHTS))  # one part: a resume asks for the tail

    result = await _pull_ms(ms, tmp_path, tuning=tuning)

    assert tree_bytes(result.path) == served(ms.repo("org/tiny"))
    weights = [r for r in ms.stats.find(path_contains="FilePath=weights") if r.range]
    assert [r.status for r in weights] == [200, 200] and weights[1].range.startswith("bytes=1")


async def test_corrupt_bytes_are_rejected_and_never_published(hubs: tuple[TestHub, TestModelScope],
                                                              tmp_path: Path) -> None:
    _, ms = hubs
    ms.faults.corrupt("weights/model.bin")

    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        await _pull_ms(ms, tmp_path)

    blobs = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] if (tmp_path / "blobs").exists() else []
    assert hashlib.sha256(WEIGHTS).hexdigest() not in {p.name for p in blobs}
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in blobs)


async def test_traversal_names_in_the_file_list_are_refused(hubs: tuple[TestHub, TestModelScope],
                                                            tmp_path: Path) -> None:
    _, ms = hubs
    repo = ms.add_repo(tiny_repo("org/evil"))
    repo.commit({"../escape.txt": "boom"}, unsafe_paths=True)

    with pytest.raises(UnsafePathError):
        await _pull_ms(ms, tmp_path / "home", "org/evil")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize(
    ("args", "setup", "message"),
    [
        (["ms://nobody/nothing"], None, "repository nobody/nothing not found on"),
        (["ms://alice/secret"], None, "if it is private, pass --token or set MODELSCOPE_API_TOKEN"),
        (["ms://alice/secret", "--token", "wrong"], None, "refused the token (401)"),
        (["ms://org/tiny", "--revision", "v9"], None, "revision 'v9' not found in org/tiny"),
        (["ms://org/tiny"], 403, "denied by"),
    ],
)
def test_refusals_are_one_line_errors(hubs: tuple[TestHub, TestModelScope], env: dict[str, str],
                                      args: list[str], setup: int | None, message: str) -> None:
    _, ms = hubs
    ms.add_repo(tiny_repo("alice/secret", private=True))
    if setup is not None:
        ms.faults.fail(setup, route="api")

    code, out, err = mreg("pull", *args)

    assert code == 3 and out == ""
    assert err.count("\n") == 1 and err.startswith("mreg: error: ") and message in err


def test_private_repo_with_the_owners_token_and_env_tokens_stay_home(hubs: tuple[TestHub, TestModelScope],
                                                                     env: dict[str, str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, ms = hubs
    ms.add_repo(tiny_repo("alice/secret", private=True))
    monkeypatch.setenv("HF_TOKEN", "ms_alice")  # a Hub token is never sent to ModelScope
    assert mreg("pull", "ms://alice/secret")[0] == 3

    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_alice")
    code, out, err = mreg("pull", "ms://alice/secret")

    assert code == 0, err
    assert tree_bytes(Path(out.strip())) == served(ms.repo("alice/secret"))


def test_ls_shows_the_upstream(hubs: tuple[TestHub, TestModelScope], env: dict[str, str]) -> None:
    hub, _ = hubs
    hub.add_repo(tiny_repo("org/hubonly"))
    assert mreg("pull", "ms://org/tiny")[0] == 0
    assert mreg("pull", "hf://org/hubonly")[0] == 0

    code, out, _ = mreg("ls", "--json")
    listed = {r["repo"]: r["upstream"] for r in json.loads(out)}
    assert listed == {"org/tiny": "modelscope", "org/hubonly": "hf"}
    code, out, _ = mreg("ls")
    assert code == 0 and "modelscope" in next(line for line in out.splitlines() if line.startswith("org/tiny"))
    with sqlite3.connect(Path(env["MREG_HOME"]) / "catalog.db") as db:
        rows = set(db.execute("SELECT repos.repo_id, files.upstream FROM files JOIN revisions ON files.revision = "
                              "revisions.id JOIN repos ON revisions.repo = repos.id"))
    assert rows == {("org/tiny", "modelscope"), ("org/hubonly", "hf")}


def test_inspect_and_search_a_modelscope_repo(hubs: tuple[TestHub, TestModelScope], env: dict[str, str]) -> None:
    hub, ms = hubs
    repo = ms.add_repo(minilm_repo())
    weights = repo.head.files["model.safetensors"].blob

    code, out, err = mreg("inspect", f"ms://{repo.repo_id}", "--json")

    assert code == 0, err
    data = json.loads(out)
    assert data["architecture"] == "BertModel" and data["parameters"]["total"] == 22713728
    assert ms.stats.resolve_bytes < 1_000_000 < weights.size  # headers over ranged reads, no weights
    assert hub.stats.requests.total() == 0
    code, out, _ = mreg("search", "--arch", "bert", "--json")
    assert code == 0 and {h["repo"] for h in json.loads(out)} == {repo.repo_id}
    code, out, _ = mreg("ls", "--json")
    assert {r["repo"]: r["upstream"] for r in json.loads(out)} == {repo.repo_id: "modelscope"}


# -- choosing the source ----------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["stopped", "503", "stalled"])
def test_auto_falls_back_when_the_hub_fails(hubs: tuple[TestHub, TestModelScope], env: dict[str, str],
                                           outage: str) -> None:
    hub, ms = hubs
    if outage == "stopped":
        hub.stop()
    elif outage == "503":
        hub.faults.fail(503, count=None)
    else:
        hub.faults.latency = 5.0
    config(env, 'source = "auto"\nstart_timeout = 1\n')

    code, out, err = mreg("pull", "org/tiny")

    assert code == 0, err
    assert "hf (hf+" in err and "is unavailable" in err and "trying modelscope (modelscope+" in err
    assert "from modelscope (modelscope+" in err
    assert tree_bytes(Path(out.strip())) == served(ms.repo("org/tiny"))
    health = json.loads((Path(env["MREG_HOME"]) / HEALTH_FILE).read_text())
    assert set(health) == {"hf"}


async def test_auto_falls_back_on_503s_and_on_a_stalled_start(hubs: tuple[TestHub, TestModelScope],
                                                              tmp_path: Path) -> None:
    hub, ms = hubs
    upstreams = [Upstream("hf", "hf", hub.endpoint), Upstream("ms", "modelscope", ms.endpoint)]
    said: list[str] = []

    async def pull_auto(home: Path) -> str:
        settings = settings_for(hub.endpoint, home)
        async with open_workspace(settings, None, FAST_TUNING.connections, FAST_RETRY) as ws:
            result, _, upstream = await pull_from(
                upstreams, RepoRef.parse("org/tiny"), None, PullOptions(tuning=FAST_TUNING), session=ws.session,
                store=ws.store, catalog=ws.catalog, health=Health(home / HEALTH_FILE), start_timeout=0.5,
                retry=FAST_RETRY, announce=said.append)
            assert tree_bytes(result.path) == served(ms.repo("org/tiny"))
            return upstream.name

    hub.faults.fail(503, count=None, route="api")
    assert await pull_auto(tmp_path / "a") == "ms"
    assert "HTTP 503" in said[0]

    hub.faults.reset()
    hub.faults.latency = 2.0
    said.clear()
    assert await pull_auto(tmp_path / "b") == "ms"
    assert "no answer in time" in said[0]

    hub.faults.reset()
    hub.stats.reset()
    assert await pull_auto(tmp_path / "b") == "ms"  # remembered as down: ModelScope is asked first
    assert hub.stats.requests.total() == 0


def test_auto_fetches_a_file_both_upstreams_hold_from_both_at_once(tmp_path: Path, env: dict[str, str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    big = Blob.from_bytes(random.Random(5).randbytes(12 * MB))
    repo = HubRepo("org/both", owner="org")
    repo.commit({"config.json": b"{}", "model.safetensors": big})
    with TestHub() as hub, TestModelScope() as ms:
        hub.add_repo(repo)
        ms.add_repo(repo)
        hub.faults.bandwidth = ms.faults.bandwidth = 6 * MB
        monkeypatch.setenv("MREG_UPSTREAMS", f"hf=hf+{hub.endpoint},ms=modelscope+{ms.endpoint}")

        code, out, err = mreg("pull", "org/both", "--source", "auto", "--json")

    assert code == 0, err
    data = json.loads(out)
    assert hashlib.sha256((Path(data["path"]) / "model.safetensors").read_bytes()).hexdigest() == big.sha256
    from_hub, from_ms = hub.stats.bytes_by_sha256[big.sha256], ms.stats.bytes_by_sha256[big.sha256]
    assert from_hub >= big.size * 0.25 and from_ms >= big.size * 0.25  # equal links: about half each
    assert from_hub + from_ms <= big.size * 1.1
    assert data["upstream"] == "hf" and data["fetched_from"] == {hub.endpoint: data["fetched_from"][hub.endpoint],
                                                                 ms.endpoint: data["fetched_from"][ms.endpoint]}


async def test_the_last_upstream_failing_is_the_error(hubs: tuple[TestHub, TestModelScope], tmp_path: Path) -> None:
    hub, ms = hubs
    ms.faults.fail(503, count=None, route="any")
    hub.faults.fail(503, count=None, route="any")
    upstreams = [Upstream("hf", "hf", hub.endpoint), Upstream("ms", "modelscope", ms.endpoint)]
    async with open_workspace(settings_for(hub.endpoint, tmp_path), None, 8, FAST_RETRY) as ws:
        with pytest.raises(UpstreamUnavailableError, match="HTTP 503"):
            await pull_from(upstreams, RepoRef.parse("org/tiny"), None, PullOptions(tuning=FAST_TUNING),
                            session=ws.session, store=ws.store, catalog=ws.catalog,
                            health=Health(tmp_path / HEALTH_FILE), start_timeout=5, retry=FAST_RETRY)


def test_mreg_upstreams_parsing() -> None:
    parsed = parse_upstreams("hf=hf+https://huggingface.co, mirror=hf+https://hf-mirror.com/,"
                             "ms=modelscope+https://modelscope.cn")
    assert [(u.name, u.kind, u.url) for u in parsed] == [
        ("hf", "hf", "https://huggingface.co"), ("mirror", "hf", "https://hf-mirror.com"),
        ("ms", "modelscope", "https://modelscope.cn")]
    for bad, why in [("hf", "not name=kind"), ("hf=https://x", "not name=kind"),
                     ("x=git+https://a.b", "unknown upstream kind 'git'"), ("x=hf+ftp://a", "not an http"),
                     ("a=hf+https://a,a=hf+https://b", "used twice"), ("b@d=hf+https://a", "upstream name"),
                     ("", "not name=kind")]:
        with pytest.raises(UsageError, match=why):
            parse_upstreams(bad)


def test_upstreams_from_env_config_and_defaults(tmp_path: Path) -> None:
    base = {"XDG_CONFIG_HOME": str(tmp_path), "HF_ENDPOINT": "https://hub.example", "HF_TOKEN": "hf_x",
            "MODELSCOPE_API_TOKEN": "ms_x", "HF_HOME": str(tmp_path / "hf")}
    default = load(base)
    assert [(u.name, u.url, u.token) for u in default.upstreams] == [
        ("hf", "https://hub.example", "hf_x"), ("modelscope", "https://modelscope.cn", "ms_x")]
    assert default.source == "hf"

    listed = load({**base, "MREG_UPSTREAMS": "m=hf+https://mirror.example,h=hf+https://hub.example"})
    assert [(u.name, u.token) for u in listed.upstreams] == [("m", None), ("h", "hf_x")]  # tokens stay home

    (tmp_path / "mreg").mkdir()
    (tmp_path / "mreg" / "config.toml").write_text(
        'source = "auto"\nstart_timeout = 2.5\n[[upstreams]]\nname = "ms"\nkind = "modelscope"\n'
        'url = "https://ms.example"\ntoken = "cfg"\n')
    configured = load(base)
    assert configured.source == "auto" and configured.start_timeout == 2.5
    assert [(u.name, u.kind, u.token) for u in configured.upstreams] == [("ms", "modelscope", "cfg")]
    with pytest.raises(UsageError, match="no hf upstream"):
        configured.select("hf")

    (tmp_path / "mreg" / "config.toml").write_text('source = "nowhere"\n')
    with pytest.raises(UsageError, match="source must be one of"):
        load(base)
    (tmp_path / "mreg" / "config.toml").write_text('[[upstreams]]\nname = 3\n')
    with pytest.raises(UsageError, match="needs string name, kind and url"):
        load(base)
    assert split_source("ms://a/b") == ("modelscope", "a/b") and split_source("hf://a/b") == ("hf", "a/b")
    with pytest.raises(UsageError, match="unknown source"):
        split_source("s3://a/b")


def test_bad_mreg_upstreams_is_a_usage_error(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MREG_UPSTREAMS", "hf=hf+https://huggingface.co,broken")
    code, out, err = mreg("pull", "org/tiny", "--source", "auto")
    assert code == 2 and out == "" and err.count("\n") == 1 and "MREG_UPSTREAMS: 'broken' is not name=kind+URL" in err
    monkeypatch.delenv("MREG_UPSTREAMS")
    code, _, err = mreg("pull", "hf://org/tiny", "--source", "modelscope")
    assert code == 2 and "names the hf source but --source says modelscope" in err


@pytest.mark.parametrize("entry", [
    {"Path": "a.bin", "Size": 3},
    {"Path": "a.bin", "Size": -1, "Sha256": "a" * 64},
    {"Path": "a.bin", "Size": "3", "Sha256": "a" * 64},
    {"Path": 7, "Size": 3, "Sha256": "a" * 64},
    {"Path": "a.bin", "Size": 3, "Sha256": "not-a-digest"},
    "a.bin",
])
def test_malformed_file_entries_are_upstream_errors(entry: object) -> None:
    with pytest.raises(UpstreamError, match="malformed file entry in the file list of org/x"):
        parse_file_entry(entry, RepoRef.parse("org/x"))


def test_file_entries_take_the_git_id_when_there_is_one() -> None:
    sha = "AB" * 32
    with_id = parse_file_entry({"Path": "a", "Size": 1, "Sha256": sha, "Id": "c" * 40}, RepoRef.parse("org/x"))
    without = parse_file_entry({"Path": "a", "Size": 1, "Sha256": sha}, RepoRef.parse("org/x"))
    assert (with_id.git_oid, with_id.lfs_sha256) == ("c" * 40, sha.lower())
    assert (without.git_oid, without.lfs_sha256) == (sha.lower(), sha.lower())


def test_pull_a_modelscope_dataset_listed_page_by_page(hubs: tuple[TestHub, TestModelScope],
                                                        env: dict[str, str]) -> None:
    _, ms = hubs
    repo = HubRepo("org/data", repo_type="dataset", owner="org")
    repo.commit({f"part/{i:03d}.csv": f"{i}\n" for i in range(205)} | {"README.md": "# data\n"})
    ms.add_repo(repo)

    code, out, err = mreg("pull", "ms://org/data", "--repo-type", "dataset")

    assert code == 0, err
    assert tree_bytes(Path(out.strip())) == served(repo)
    pages = ms.stats.find(path_contains="/api/v1/datasets/org/data/repo/tree")
    assert [p.path.split("PageNumber=")[1].split("&")[0] for p in pages] == ["1", "2"]


def test_dataset_revisions_are_tags_or_refusals(hubs: tuple[TestHub, TestModelScope], env: dict[str, str]) -> None:
    _, ms = hubs
    repo = HubRepo("org/data", repo_type="dataset", owner="org")
    repo.commit({"a.csv": "1\n"})
    repo.tag("v1")
    repo.commit({"a.csv": "2\n"})
    ms.add_repo(repo)

    code, out, err = mreg("pull", "ms://org/data", "--repo-type", "dataset", "--revision", "v1")
    assert code == 0, err
    assert tree_bytes(Path(out.strip())) == {"a.csv": b"1\n"}
    code, out, err = mreg("pull", "ms://org/data", "--repo-type", "dataset", "--revision", "v9")
    assert code == 3 and "revision 'v9' not found in datasets/org/data" in err and err.count("\n") == 1
