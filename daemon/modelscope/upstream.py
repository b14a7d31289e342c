"""A ModelScope endpoint as the mirror's upstream: the Hub routes the mirror asks, answered from
ModelScope's API.

``ModelScopeUpstream.call`` takes the same Hub requests as ``Upstream.call`` (repo info, tree,
paths-info, refs, the HEAD on a resolve URL that checks access) and answers them as the Hub would,
built from ModelScope's repo info and file list (``hubshape``); ``client`` is a ModelScopeClient,
so files reach the store through the same transfers, verified against ModelScope's sha256. The
Hub's ``main`` is ModelScope's ``master`` (the client maps it). Each caller's token goes to
ModelScope as theirs. Searches and whoami have no ModelScope counterpart here: they answer 501.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import aiohttp

from mreg.registry.errors import (
    EntryNotFoundError,
    MregError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UpstreamUnavailableError,
)
from mreg.registry.upstream.modelscope import Listings, ModelScopeClient
from mreg.registry.repo import RepoRef

from mreg.daemon.modelscope import hub_shapes as hubshape
from mreg.daemon.hub.shapes import info_view, paths_info_view, tree_view
from mreg.daemon.hub.paths import HubPath, parse_hub_path
from mreg.daemon.serving.upstream import DOWNLOAD_RETRY, Answer, Upstream

NOT_FOUND_CODES = ((RepoNotFoundError, "RepoNotFound"), (RevisionNotFoundError, "RevisionNotFound"),
                   (EntryNotFoundError, "EntryNotFound"))


def _answer(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Answer(status, {**(headers or {}), "Content-Type": "application/json"}, None, body)


def _error(status: int, code: str | None, message: str) -> Answer:
    headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
    return _answer({"error": message}, status, headers)


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, [""])[-1].lower() in ("1", "true")


def _not_found(exc: MregError) -> Answer:
    """ModelScope's "not found" as the Hub says it (what huggingface_hub turns into its own errors)."""
    code = next(code for kind, code in NOT_FOUND_CODES if isinstance(exc, kind))
    return _error(404, code, str(exc))


class ModelScopeUpstream(Upstream):
    """A ModelScope endpoint, answering the mirror's Hub requests (see the module docstring)."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, offline: bool, down_for: float) -> None:
        super().__init__(session, endpoint, offline, down_for)
        self._listings = Listings()

    def client(self, token: str | None) -> ModelScopeClient:  # type: ignore[override]
        """A ModelScope client speaking for one caller (sharing what the mirror learnt of commits)."""
        return ModelScopeClient(self.session, self.endpoint, token, DOWNLOAD_RETRY, listings=self._listings)

    async def call(self, method: str, path: str, token: str | None, body: bytes | None = None,
                   content_type: str | None = None) -> Answer:
        """The Hub's answer to ``method path``, built from what ModelScope says to ``token``."""
        self._check()
        hub = parse_hub_path(path)
        if hub is None or hub.repo is None:
            return _error(501, None, f"{self.endpoint} is a ModelScope upstream: the mirror cannot answer this Hub "
                                     f"route from it")
        query = parse_qs(urlsplit(path).query)
        try:
            return await self._answer(hub, hub.repo, query, token, body)
        except UpstreamUnavailableError:
            await self.outages.request_failed()
            raise
        except (RepoNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
            return _not_found(exc)

    async def _answer(self, hub: HubPath, repo: RepoRef, query: dict[str, list[str]], token: str | None,
                      body: bytes | None) -> Answer:
        client = self.client(token)
        info = await client.repo_info(repo, hub.revision or "main")
        headers = {"X-Repo-Commit": info.commit}
        if hub.kind == "resolve":  # access probe (HEAD): the caller may read the repo's files
            return _answer({}, 200, headers)
        if hub.kind == "refs":
            return _answer(hubshape.refs(info.commit))  # refs carry no revision: info is main's
        entries = hubshape.tree_entries(await client.list_files(repo, info.commit), info.commit)
        if hub.kind == "info":
            data = hubshape.repo_info(repo, info.commit, info.private, entries)
            expand = query.get("expand", []) + query.get("expand[]", [])
            return _answer(info_view(data, _flag(query, "blobs"), expand), 200, headers)
        if hub.kind == "tree":
            listed = tree_view(entries, hub.path, _flag(query, "recursive"))
            if listed is None:
                return _error(404, "EntryNotFound", f"{hub.path} does not exist on {hub.revision}")
            return _answer(listed, 200, headers)
        paths = parse_qs((body or b"").decode(errors="replace")).get("paths", [])
        return _answer(paths_info_view(entries, paths), 200, headers)
