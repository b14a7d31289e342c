"""HubClient's redirect, token and validation policy against small purpose-built servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mreg.registry.errors import UpstreamError
from mreg.registry.upstream.hub import HubClient
from mreg.registry.repo import RepoRef
from tests.pulling import FAST_RETRY

COMMIT = "a" * 40
REPO = RepoRef.parse("org/model")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., object]]:
    servers: list[TestServer] = []

    async def start(handler: Callable[[web.Request], object], host: str = "127.0.0.1") -> TestServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = TestServer(app, host=host)
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def client_for(url: str, token: str | None = "hf_secret") -> tuple[HubClient, aiohttp.ClientSession]:
    session = aiohttp.ClientSession()
    return HubClient(session, url, token, FAST_RETRY), session


async def test_token_follows_same_host_redirects_only(serve) -> None:
    seen: dict[str, str | None] = {}

    async def other_host(request: web.Request) -> web.Response:
        seen["other"] = request.headers.get("Authorization")
        return web.json_response({"sha": COMMIT})

    other = await serve(other_host, host="127.0.0.3")

    async def hub(request: web.Request) -> web.Response:
        seen[request.path] = request.headers.get("Authorization")
        if request.path == "/api/models/org/model/revision/main":
            raise web.HTTPTemporaryRedirect("/api/models/org/renamed/revision/main")  # relative
        if request.path == "/api/models/org/renamed/revision/main":
            raise web.HTTPTemporaryRedirect(str(other.make_url("/elsewhere")))  # absolute, other host
        raise web.HTTPNotFound()

    server = await serve(hub)
    client, session = await client_for(str(server.make_url("")).rstrip("/"))
    async with session:
        info = await client.repo_info(REPO, "main")
    assert info.commit == COMMIT
    assert seen["/api/models/org/model/revision/main"] == "Bearer hf_secret"
    assert seen["/api/models/org/renamed/revision/main"] == "Bearer hf_secret"
    assert seen["other"] is None


async def test_head_stops_at_another_host_and_keeps_the_signed_url(serve) -> None:
    async def hub(request: web.Request) -> web.Response:
        if "/resolve/" in request.path and request.path.startswith("/org/model/"):
            raise web.HTTPFound("/org/model2/" + request.path.split("/", 3)[3])
        return web.Response(status=302, headers={
            "Location": "http://127.0.0.9:1/cdn/blob?Expires=1&Signature=x",
            "X-Linked-Etag": '"' + "b" * 64 + '"', "X-Linked-Size": "123", "X-Repo-Commit": COMMIT})

    server = await serve(hub)
    client, session = await client_for(str(server.make_url("")).rstrip("/"))
    async with session:
        loc = await client.locate(REPO, COMMIT, "w.bin")
    assert loc.url == "http://127.0.0.9:1/cdn/blob?Expires=1&Signature=x"
    assert (loc.size, loc.etag, loc.commit) == (123, "b" * 64, COMMIT)


@pytest.mark.parametrize("entry, message", [
    ({"type": "file", "path": "a", "size": -1, "oid": "c" * 40}, "malformed file entry"),
    ({"type": "file", "path": "a", "size": "12", "oid": "c" * 40}, "malformed file entry"),
    ({"type": "file", "path": 7, "size": 1, "oid": "c" * 40}, "malformed file entry"),
    ({"type": "file", "path": "a", "size": 1, "oid": "zz"}, "malformed file entry"),
    ({"type": "file", "path": "a", "size": 1, "oid": "c" * 40, "lfs": {"oid": "nothex", "size": 1}}, "malformed LFS"),
    ({"type": "file", "path": "a", "size": 1, "oid": "c" * 40, "lfs": {"oid": "d" * 64, "size": 2}}, "malformed LFS"),
])
async def test_hostile_tree_entries_are_refused(serve, entry: dict, message: str) -> None:
    async def hub(request: web.Request) -> web.Response:
        return web.json_response([entry])

    server = await serve(hub)
    client, session = await client_for(str(server.make_url("")).rstrip("/"))
    async with session:
        with pytest.raises(UpstreamError, match=message):
            await client.list_files(REPO, COMMIT)


async def test_pagination_to_another_host_is_refused(serve) -> None:
    async def hub(request: web.Request) -> web.Response:
        return web.json_response([], headers={"Link": '<http://127.0.0.3:9/steal>; rel="next"'})

    server = await serve(hub)
    client, session = await client_for(str(server.make_url("")).rstrip("/"))
    async with session:
        with pytest.raises(UpstreamError, match="another host"):
            await client.list_files(REPO, COMMIT)


@pytest.mark.parametrize("body, message", [(b"<html>", "did not answer with JSON"), (b'{"sha": "short"}', "no valid commit")])
async def test_bad_repo_info_answers(serve, body: bytes, message: str) -> None:
    async def hub(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    server = await serve(hub)
    client, session = await client_for(str(server.make_url("")).rstrip("/"))
    async with session:
        with pytest.raises(UpstreamError, match=message):
            await client.repo_info(REPO, "main")


async def test_server_ignoring_range_is_an_error(serve) -> None:
    async def cdn(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 100)

    server = await serve(cdn)
    client, session = await client_for(str(server.make_url("")).rstrip("/"))
    from mreg.registry.upstream.client import FileLocation

    loc = FileLocation(url=str(server.make_url("/f")), size=100, etag="", commit=COMMIT)
    async with session:
        with pytest.raises(UpstreamError, match="ignored the Range header"):
            await client.open_range(loc, 50, 100, aiohttp.ClientTimeout(total=5))
        resp = await client.open_range(loc, 0, 100, aiohttp.ClientTimeout(total=5))
        assert await resp.read() == b"x" * 100
