"""``/v1/pins``: the size budget's pins (``mreg pin`` through the daemon), behind the admin token policy of
``daemon.admin`` like the mirror jobs.

    GET    /v1/pins                                   every pin
    POST   /v1/pins      {repo, revision?, repo_type?} → 201 the pin (200 if it was pinned already)
    DELETE /v1/pins?repo=ORG/NAME[&revision=R][&repo_type=dataset]   → 200, or 404 if it was not pinned

Without ``revision`` the whole repo is pinned (every revision, also those not pulled yet); a revision is one
the catalog knows (branch, tag, commit or a 7+ digit prefix), pinned as its commit.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mreg.registry.catalog import PinRecord
from mreg.registry.errors import UsageError
from mreg.registry.maintenance import resolve_local
from mreg.registry.repo import RepoRef

from mreg.daemon.catalog.requests import json_object
from mreg.daemon.hub.answers import hub_error, json_answer
from mreg.daemon.state import MIRROR


def pin_json(repo: RepoRef, commit: str | None) -> dict[str, Any]:
    return {"repo": repo.repo_id, "repo_type": repo.repo_type, "revision": commit}


async def _target(request: web.Request, fields: dict[str, Any]) -> tuple[RepoRef, str | None]:
    repo_id, repo_type, revision = fields.get("repo"), fields.get("repo_type") or "model", fields.get("revision")
    if not (isinstance(repo_id, str) and isinstance(repo_type, str) and isinstance(revision, (str, type(None)))):
        raise UsageError("'repo' (and 'repo_type', 'revision' if given) must be strings")
    repo = RepoRef.parse(repo_id, repo_type)
    catalog = request.app[MIRROR].catalog
    return repo, (await resolve_local(catalog, repo, revision) if revision else None)


async def list_pins(request: web.Request) -> web.Response:
    pins: list[PinRecord] = await request.app[MIRROR].catalog.pins()
    return json_answer([{**pin_json(p.repo, p.commit), "pinned_at": p.created_at.isoformat()} for p in pins])


async def add_pin(request: web.Request) -> web.Response:
    repo, commit = await _target(request, await json_object(request))
    added = await request.app[MIRROR].catalog.pin(repo, commit)
    return json_answer(pin_json(repo, commit), status=201 if added else 200)


async def remove_pin(request: web.Request) -> web.Response:
    repo, commit = await _target(request, dict(request.query))
    if not await request.app[MIRROR].catalog.unpin(repo, commit):
        return hub_error(404, None, f"{repo}" + (f"@{commit}" if commit else "") + " is not pinned")
    return json_answer(pin_json(repo, commit))
