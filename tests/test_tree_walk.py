"""The one tree walk: registry's `HubClient.tree_json` pages through a Hub tree for both its readers,
the CLI's `list_files` (parsed, one-line errors) and the daemon's `Upstream.commit_listing` (raw, xet
stripped, refusals passed on as upstream sent them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mreg.daemon.serving.upstream import Upstream
from mreg.registry.errors import RevisionNotFoundError, UpstreamRefusedError
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.hub import HubClient
from tests.pulling import FAST_RETRY

COMMIT = "a" * 40
REPO = RepoRef.parse("org/model")
TREE = f"/api/models/org/model/tree/{COMMIT}"
PAGES = [
    [{"type": "directory", "path": "sub", "oid": "d" * 40, "size": 0},
     {"type": "file", "path": "sub/a.txt", "oid": "1" * 40, "size": 3}],
    [{"type": "file", "path": "w.bin", "oid": "2" * 40, "size": 9, "xetHash": "ab" * 32,
      "lfs": {"oid": "c" * 64, "size": 9, "pointerSize": 130}}],
    [{"type": "file", "path": "z.json", "oid": "3" * 40, "size": 2}],
]


class Hub:
    """A Hub serving the tree of ``COMMIT`` in three pages (a relative, then an absolute next link)."""

    def __init__(self, refuse_page: int | None = None) -> None:
        self.asked: Counter[int] = Counter()
        self.tokens: set[str | None] = set()
        self.refuse_page = refuse_page

    async def handle(self, request: web.Request) -> web.Response:
        self.tokens.add(request.headers.get("Authorization"))
        if request.path == f"/api/models/org/model/revision/{COMMIT}":
            return web.json_response({"id": "org/model", "sha": COMMIT,
                                      "siblings": [{"rfilename": "w.bin", "xetHash": "ab" * 32}]})
        assert request.path == TREE and request.query["recursive"] == "true"
        page = int(request.query.get("cursor", "0"))
        self.asked[page] += 1
        if page == self.refuse_page:
            return web.json_response({"error": "gone"}, status=404,
                                     headers={"X-Error-Code": "RevisionNotFound", "X-Error-Message": "gone",
                                              "Set-Cookie": "s=1"})
        headers = {}
        if page == 0:
            headers["Link"] = f'<{TREE}?recursive=true&expand=false&cursor=1>; rel="next"'
        elif page == 1:
            headers["Link"] = f'<{request.url.with_query(recursive="true", cursor="2")}>; rel="next"'
        return web.json_response(PAGES[page], headers=headers)


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    servers: list[TestServer] = []

    async def start(hub: Hub) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", hub.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


async def test_both_readers_walk_every_page_once_through_the_shared_walk(serve) -> None:
    hub = Hub()
    endpoint = await serve(hub)
    async with aiohttp.ClientSession() as session:
        files = await HubClient(session, endpoint, "hf_cli", FAST_RETRY).list_files(REPO, COMMIT)
        assert hub.asked == Counter({0: 1, 1: 1, 2: 1})
        info, entries = await Upstream(session, endpoint, offline=False, down_for=60).commit_listing(
            REPO, COMMIT, "hf_caller")
    assert hub.asked == Counter({0: 2, 1: 2, 2: 2})
    assert hub.tokens == {"Bearer hf_cli", "Bearer hf_caller"}
    assert [(f.path, f.size, f.lfs_sha256) for f in files] == [
        ("sub/a.txt", 3, None), ("w.bin", 9, "c" * 64), ("z.json", 2, None)]
    raw = [entry for page in PAGES for entry in page]
    assert entries == [{k: v for k, v in e.items() if k != "xetHash"} for e in raw]  # directories kept, as sent
    assert info == {"id": "org/model", "sha": COMMIT, "siblings": [{"rfilename": "w.bin"}]}


async def test_a_refused_page_is_a_one_line_error_for_the_cli_and_upstreams_answer_for_the_daemon(serve) -> None:
    hub = Hub(refuse_page=1)
    endpoint = await serve(hub)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(RevisionNotFoundError, match=f"revision '{COMMIT}' not found in org/model"):
            await HubClient(session, endpoint, None, FAST_RETRY).list_files(REPO, COMMIT)
        with pytest.raises(UpstreamRefusedError) as refused:
            await Upstream(session, endpoint, offline=False, down_for=60).commit_listing(REPO, COMMIT, None)
    assert hub.asked == Counter({0: 2, 1: 2})
    assert refused.value.http_status == 404 and refused.value.code == "RevisionNotFound"
    assert refused.value.headers == {"Content-Type": "application/json; charset=utf-8",
                                     "X-Error-Code": "RevisionNotFound", "X-Error-Message": "gone"}
    assert refused.value.body == b'{"error": "gone"}'
