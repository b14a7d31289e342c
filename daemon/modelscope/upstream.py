"""A ModelScope endpoint as the mirror's upstream: what the mirror asks for itself (a revision's commit, a
commit's listing, a caller's access) and the Hub metadata routes it passes through, answered from
ModelScope's API as the Hub would answer them.

The answers are built as data from the ModelScope client's ``RepoInfo`` and ``RemoteFile`` list
(``hubshape``), never serialised and parsed back; ``client`` is a ModelScopeClient, so files reach the
store through the same transfers, verified against ModelScope's sha256. The Hub's ``main`` is
ModelScope's ``master`` (the client maps it). Each caller's token goes to ModelScope as theirs.
Searches and whoami have no ModelScope counterpart here: they answer 501.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import aiohttp

from mreg.registry.errors import (
    EntryNotFoundError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
)
from mreg.registry.upstream.health import Health
from mreg.registry.upstream.modelscope import Listings, ModelScopeClient
from mreg.registry.repo import RepoRef

from mreg.daemon.modelscope import hub_shapes as hubshape
from mreg.daemon.hub.shapes import info_view, paths_info_view, tree_view
from mreg.daemon.hub.paths import HubPath, parse_hub_path
from mreg.daemon.serving.upstream import DOWNLOAD_RETRY, Answer, Upstream, checked_commit

T = TypeVar("T")


def _answer(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, {**(headers or {}), "Content-Type": "application/json"}, None, b"", data)


def _error(status: int, code: str | None, message: str) -> Answer:
    headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
    return _answer({"error": message}, status, headers)


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, [""])[-1].lower() in ("1", "true")


class ModelScopeUpstream(Upstream):
    """A ModelScope endpoint, answering the mirror's Hub requests (see the module docstring)."""

    kind = "modelscope"

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, offline: bool, down_for: float, *,
                 name: str | None = None, token: str | None = None, health: Health | None = None) -> None:
        super().__init__(session, endpoint, offline, down_for, name=name, token=token, health=health)
        self._listings = Listings()

    def client(self, token: str | None) -> ModelScopeClient:  # type: ignore[override]
        """A ModelScope client speaking for one caller (sharing what the mirror learnt of commits)."""
        return ModelScopeClient(self.session, self.endpoint, token, DOWNLOAD_RETRY, listings=self._listings)

    async def _ask(self, token: str | None, question: Callable[[ModelScopeClient], Awaitable[T]]) -> T:
        """``question`` put to ModelScope with ``token``: a repo, revision or file it does not have is the
        Hub's 404 (UpstreamRefusedError); failing to reach it has the daemon check its health."""
        self._check()
        try:
            return await question(self.client(token))
        except UpstreamUnavailableError:
            await self.outages.request_failed()
            raise
        except (RepoNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
            # as the Hub says it: huggingface_hub reads the code
            raise _error(exc.http_status, exc.code, str(exc)).refused() from None

    async def pin(self, repo: RepoRef, revision: str, token: str | None) -> str:
        info = await self._ask(token, lambda client: client.repo_info(repo, revision))
        return checked_commit(info.commit, repo, revision)

    async def commit_listing(self, repo: RepoRef, commit: str, token: str | None) -> tuple[Any, list[Any]]:
        return await self._ask(token, lambda client: _listing(client, repo, commit))

    async def access_probe(self, repo: RepoRef, commit: str, path: str, token: str | None) -> Answer:
        try:
            info = await self._ask(token, lambda client: client.repo_info(repo, commit))
        except UpstreamRefusedError as refused:
            return Answer.passed_on(refused)
        return _answer({}, 200, {"X-Repo-Commit": info.commit})

    async def call(self, method: str, path: str, token: str | None, body: bytes | None = None,
                   content_type: str | None = None) -> Answer:
        """The Hub's answer to the metadata route ``method path``, built from what ModelScope says to ``token``."""
        hub = parse_hub_path(path)
        if hub is None or hub.repo is None or hub.kind == "resolve":
            return _error(501, None, f"{self.endpoint} is a ModelScope upstream: the mirror cannot answer this Hub "
                                     f"route from it")
        query = parse_qs(urlsplit(path).query)
        try:
            return await self._ask(token, lambda client: _route(client, hub, query, body))
        except UpstreamRefusedError as refused:
            return Answer.passed_on(refused)


async def _listing(client: ModelScopeClient, repo: RepoRef, revision: str) -> tuple[dict[str, Any], list[Any]]:
    """The Hub's repo info (``blobs=true``) and recursive tree of ``repo`` at ``revision``."""
    info = await client.repo_info(repo, revision)
    entries = hubshape.tree_entries(await client.list_files(repo, info.commit), info.commit)
    return hubshape.repo_info(repo, info.commit, info.private, entries), entries


async def _route(client: ModelScopeClient, hub: HubPath, query: dict[str, list[str]], body: bytes | None) -> Answer:
    """The answer to a Hub metadata route: repo info, tree, paths-info or refs."""
    assert hub.repo is not None
    if hub.kind == "refs":  # refs carry no revision: main's commit
        return _answer(hubshape.refs((await client.repo_info(hub.repo, "main")).commit))
    info, entries = await _listing(client, hub.repo, hub.revision or "main")
    headers = {"X-Repo-Commit": info["sha"]}
    if hub.kind == "info":
        expand = query.get("expand", []) + query.get("expand[]", [])
        return _answer(info_view(info, _flag(query, "blobs"), expand), 200, headers)
    if hub.kind == "tree":
        listed = tree_view(entries, hub.path, _flag(query, "recursive"))
        if listed is None:
            return _error(404, "EntryNotFound", f"{hub.path} does not exist on {hub.revision}")
        return _answer(listed, 200, headers)
    paths = parse_qs((body or b"").decode(errors="replace")).get("paths", [])
    return _answer(paths_info_view(entries, paths), 200, headers)
