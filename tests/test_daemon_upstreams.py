"""`mreg serve` with several upstreams (MREG_UPSTREAMS, the config file, repeated --upstream): the real
huggingface_hub client through the daemon gets a repo from the test ModelScope when the Hub before it
is down or does not have the repo; an upstream that is down is passed over until its health check says
it is up; each token reaches only its own upstream; a gated repo the first upstream refuses is never
fetched from the next.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError

from mreg.daemon.serving.upstream import Upstream
from mreg.daemon.serving.upstreams import Upstreams
from mreg.registry.errors import UsageError
from mreg.registry.upstream.configured import serve_upstreams
from tests.daemons import Daemon, free_port, start_daemon, start_daemon_process, wait_for
from tests.test_daemon_ms_upstream import served, tree_bytes
from tests.test_mirror import call, wait_job
from tests.testhub import TestHub, TestModelScope, small_repo
from tests.testhub.fixtures import MS_TOKENS, TOKENS

pytestmark = pytest.mark.timeout(120)

REPO = "msorg/tiny"
GATED = "testorg/gated"
HUB_DAEMON_TOKEN, MS_DAEMON_TOKEN = "hf_test_owner", "ms_test_owner"


@pytest.fixture
def modelscope(tmp_path: Path) -> Iterator[TestModelScope]:
    with TestModelScope(tokens=MS_TOKENS) as ms:
        ms.add_repo(small_repo(REPO, {"README.md": "# tiny\n", "config.json": '{"model_type": "llama"}\n',
                                      "weights.bin": bytes(range(256)) * 4000}))
        ms.add_repo(small_repo(GATED, {"README.md": "# ModelScope's public copy\n"}))
        yield ms


@pytest.fixture
def stopping() -> Iterator[list[Daemon]]:
    """Daemons a test starts, stopped cleanly after it; no token reaches their logs or stores."""
    daemons: list[Daemon] = []
    yield daemons
    for daemon in daemons:
        code = daemon.stop()
        written = daemon.log.read_bytes() + b"".join(p.read_bytes() for p in daemon.home.rglob("*")
                                                    if p.is_file() and not p.is_symlink())
        assert code == 0, daemon.log.read_text()
        assert not any(token.encode() in written for token in (*TOKENS, *MS_TOKENS))


def mirror(tmp_path: Path, stopping: list[Daemon], upstreams: str) -> Daemon:
    daemon = start_daemon(tmp_path / "home", "http://127.0.0.1:9", env={"MREG_UPSTREAMS": upstreams})
    stopping.append(daemon)
    return daemon


def upstream_health(daemon: Daemon) -> dict[str, dict[str, object]]:
    return {u["name"]: u for u in daemon.health()["upstreams"]}


def test_a_hub_that_is_down_falls_back_to_modelscope(modelscope: TestModelScope, stopping: list[Daemon],
                                                     tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    daemon = mirror(tmp_path, stopping, f"hub=hf+{closed},ms=modelscope+{modelscope.endpoint}")
    files = served(modelscope.repo(REPO))
    folder = Path(snapshot_download(REPO, cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False))
    assert tree_bytes(folder) == files and folder.name == modelscope.repo(REPO).head.sha
    single = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False)
    assert Path(single).read_bytes() == files["weights.bin"]
    sha256 = hashlib.sha256(files["weights.bin"]).hexdigest()
    assert modelscope.stats.bytes_by_sha256[sha256] == len(files["weights.bin"])  # one upstream copy
    health = upstream_health(daemon)
    assert health["hub"]["available"] is False and health["hub"]["down"] and health["hub"]["url"] == closed
    assert health["ms"] == {"name": "ms", "kind": "modelscope", "url": modelscope.endpoint, "available": True,
                            "down": None}
    assert daemon.health()["upstream_available"] is True
    # "not found" on ModelScope is no answer while the Hub, which may have the repo, cannot be asked
    status, headers, _ = daemon.get("/api/models/msorg/missing")
    assert status == 504 and "127.0.0.1" in headers["X-Error-Message"]


def test_mreg_serve_reads_the_upstreams_from_its_environment(modelscope: TestModelScope, stopping: list[Daemon],
                                                            tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    daemon = start_daemon_process(tmp_path / "home", closed,
                                  env={"MREG_UPSTREAMS": f"hub=hf+{closed},ms=modelscope+{modelscope.endpoint}"})
    stopping.append(daemon)
    path = hf_hub_download(REPO, "config.json", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    assert Path(path).read_bytes() == served(modelscope.repo(REPO))["config.json"]
    assert [(u["name"], u["available"]) for u in daemon.health()["upstreams"]] == [("hub", False), ("ms", True)]


def test_a_hub_that_is_down_is_passed_over_until_its_health_check_says_up(
        test_hub: TestHub, modelscope: TestModelScope, stopping: list[Daemon], tmp_path: Path) -> None:
    test_hub.add_repo(small_repo("testorg/on-hub"))
    test_hub.faults.drop(count=None)  # every connection dropped, the health check's too
    daemon = mirror(tmp_path, stopping, f"hub=hf+{test_hub.endpoint},ms=modelscope+{modelscope.endpoint}")
    first = hf_hub_download(REPO, "README.md", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    assert Path(first).read_bytes() == b"# tiny\n"
    assert "HEAD /" in test_hub.stats.dropped  # the daemon's health check, which marked the hub down
    asked = len(test_hub.stats.dropped)
    snapshot = Path(snapshot_download(REPO, cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False))
    assert tree_bytes(snapshot) == served(modelscope.repo(REPO))
    assert upstream_health(daemon)["hub"]["down"], "the hub's down window ended mid-test: nothing was shown"
    assert len(test_hub.stats.dropped) == asked  # passed over at once while down
    test_hub.faults.reset()  # the hub is back: once its down window ends, it is asked first again
    wait_for(lambda: upstream_health(daemon)["hub"]["available"] is True, 60, "the hub's down window to end")
    on_hub = hf_hub_download("testorg/on-hub", "README.md", cache_dir=tmp_path / "c3", endpoint=daemon.url,
                             token=False)
    assert Path(on_hub).read_bytes() == served(test_hub.repo("testorg/on-hub"))["README.md"]
    assert test_hub.stats.find(method="GET", path_contains="/api/models/testorg/on-hub")


def test_a_hub_too_slow_to_answer_is_passed_over_after_the_start_timeout(
        test_hub: TestHub, modelscope: TestModelScope, stopping: list[Daemon], tmp_path: Path) -> None:
    config = tmp_path / "xdg-config" / "mreg" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("start_timeout = 0.5\n")
    test_hub.faults.latency = 30.0  # it would answer "no such repo", in 30 s
    daemon = mirror(tmp_path, stopping, f"hub=hf+{test_hub.endpoint},ms=modelscope+{modelscope.endpoint}")
    began = time.monotonic()
    path = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    assert Path(path).read_bytes() == served(modelscope.repo(REPO))["weights.bin"]
    assert time.monotonic() - began < 20


def write_config(tmp_path: Path, hub: TestHub, ms: TestModelScope) -> None:
    """The daemon's config file (its XDG_CONFIG_HOME is next to its home): the Hub, then ModelScope, each
    with the daemon's own token."""
    path = tmp_path / "xdg-config" / "mreg" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'''
[[upstreams]]
name = "hub"
kind = "hf"
url = "{hub.endpoint}"
token = "{HUB_DAEMON_TOKEN}"

[[upstreams]]
name = "ms"
kind = "modelscope"
url = "{ms.endpoint}"
token = "{MS_DAEMON_TOKEN}"
''')


def tokens_seen(records: object) -> set[str | None]:
    return {r.authorization for r in records}  # type: ignore[attr-defined]


def test_each_token_goes_only_to_its_own_upstream(test_hub: TestHub, modelscope: TestModelScope,
                                                  stopping: list[Daemon], tmp_path: Path) -> None:
    write_config(tmp_path, test_hub, modelscope)
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint)
    stopping.append(daemon)
    assert [u["name"] for u in daemon.health()["upstreams"]] == ["hub", "ms"]
    # a caller's token goes to the first upstream only: ModelScope is asked anonymously
    path = hf_hub_download(REPO, "README.md", cache_dir=tmp_path / "c1", endpoint=daemon.url,
                           token="hf_test_alice")
    assert Path(path).read_bytes() == b"# tiny\n"
    assert test_hub.stats.find(path_contains=REPO)  # the Hub said it has no such repo
    assert tokens_seen(test_hub.stats.records) == {"Bearer hf_test_alice"}
    assert tokens_seen(modelscope.stats.records) == {None}
    # a mirror job: each upstream gets the daemon's own token for it, and no other
    test_hub.stats.reset()
    modelscope.stats.reset()
    assert call(daemon, "POST", "/v1/jobs", {"repo": REPO})[0] == 201
    wait_job(daemon, REPO, 60, status="done")
    assert tokens_seen(test_hub.stats.records) == {f"Bearer {HUB_DAEMON_TOKEN}"}
    assert tokens_seen(modelscope.stats.records) <= {f"Bearer {MS_DAEMON_TOKEN}", None}
    assert f"Bearer {MS_DAEMON_TOKEN}" in tokens_seen(modelscope.stats.records)
    with sqlite3.connect(daemon.home / "catalog.db") as db:
        assert set(db.execute("SELECT upstream FROM revisions")) == {("ms",)}


def test_a_gated_repo_the_first_upstream_refuses_is_not_served_from_the_next(
        test_hub: TestHub, modelscope: TestModelScope, stopping: list[Daemon], tmp_path: Path) -> None:
    gated = test_hub.add_repo(small_repo(GATED, gated="manual", allowed_users={"alice"}))
    daemon = mirror(tmp_path, stopping, f"hub=hf+{test_hub.endpoint},ms=modelscope+{modelscope.endpoint}")
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download(GATED, "README.md", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as bob:
        snapshot_download(GATED, cache_dir=tmp_path / "c2", endpoint=daemon.url, token="hf_test_bob")
    assert bob.value.response.status_code == 403
    assert not modelscope.stats.find(path_contains=GATED)  # ModelScope was never asked
    alice = hf_hub_download(GATED, "README.md", cache_dir=tmp_path / "c3", endpoint=daemon.url,
                            token="hf_test_alice")
    assert Path(alice).read_bytes() == served(gated)["README.md"]


def test_the_daemon_s_upstreams_and_their_tokens() -> None:
    env = {"HF_ENDPOINT": "https://hub.example", "HF_TOKEN": "hf_env",
           "MODELSCOPE_ENDPOINT": "https://ms.example", "MODELSCOPE_API_TOKEN": "ms_env",
           "XDG_CONFIG_HOME": "/nonexistent"}
    given = serve_upstreams(["https://hub.example", "modelscope+https://ms.example", "https://mirror.example/"], env)
    assert [(u.name, u.kind, u.url, u.token) for u in given] == [
        ("hf", "hf", "https://hub.example", "hf_env"), ("modelscope", "modelscope", "https://ms.example", "ms_env"),
        ("hf-2", "hf", "https://mirror.example", None)]
    listed = serve_upstreams([], {**env,
                                  "MREG_UPSTREAMS": "m=hf+https://mirror.example,ms=modelscope+https://ms.example"})
    assert [(u.name, u.token) for u in listed] == [("m", None), ("ms", "ms_env")]
    assert [(u.name, u.url, u.token) for u in serve_upstreams([], env)] == [("hf", "https://hub.example", "hf_env")]
    with pytest.raises(UsageError, match="--upstream"):
        serve_upstreams(["ftp://hub.example"], env)


def test_a_token_is_sent_only_to_the_upstream_it_belongs_to() -> None:
    async def sent() -> list[list[str | None]]:
        async with aiohttp.ClientSession() as session:
            hub, other, ms = (Upstream(session, f"https://{name}.example", False, 10, name=name, token=token)
                              for name, token in (("hub", "hf_daemon"), ("mirror", None), ("ms", "ms_daemon")))
            upstreams = Upstreams([hub, other, ms], offline=False, start_timeout=10)
            return [[upstreams.token_for(m, token) for m in upstreams.members]
                    for token in ("hf_caller", "hf_daemon", "ms_daemon", None)]

    assert asyncio.run(sent()) == [["hf_caller", None, None], ["hf_daemon", None, None], [None, None, "ms_daemon"],
                                   [None, None, None]]
