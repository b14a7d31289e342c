"""Who may read a gated or private repo from the mirror's store: whoever upstream lets read it.

For each (caller, repo) the daemon asks upstream once per ``ttl`` with the caller's own token (a
HEAD on a resolve URL, which is where the Hub enforces gates) and keeps the verdict in a ``Verdicts``
cache (this process's memory unless given another), keyed by a sha256 of the token. A refusal is upstream's answer itself, so anonymous callers get exactly
the GatedRepo / RepoNotFound errors the Hub gives. While upstream is away, the last verdict stands;
a caller never checked gets no gated or private content, metadata included: an anonymous caller gets
the Hub's own refusal, one with a token an error saying access cannot be checked. Offline (``mreg serve
--offline``), a Hub or ModelScope route tells a caller it refuses exactly what it tells of a repo the
mirror never saw (``not_in_mirror``): its answers are no oracle of which gated or private repos it keeps.
"""

from __future__ import annotations

import time

from mreg.registry.errors import UpstreamUnavailableError

from mreg.daemon.serving.commits import CommitMeta
from mreg.daemon.serving.upstream import Answer, not_in_mirror, token_key
from mreg.daemon.serving.upstreams import Upstreams
from mreg.daemon.verdicts import MemoryVerdicts, Verdict, Verdicts

REFUSING_CODES = frozenset({"GatedRepo", "RepoNotFound"})


def anonymous_refusal(meta: CommitMeta) -> Answer:
    """The Hub's answer to an anonymous caller of a private (RepoNotFound) or gated (GatedRepo) repo."""
    if meta.private:
        code, message = "RepoNotFound", f"Repository not found: {meta.repo}"
    else:
        code, message = "GatedRepo", f"Access to {meta.repo} is restricted: please log in with a token"
    return Answer(401, {"X-Error-Code": code, "X-Error-Message": message}, None, b"")


class Access:
    """Upstream's recent verdicts on (token hash, repo)."""

    def __init__(self, upstream: Upstreams, ttl: float, verdicts: Verdicts | None = None) -> None:
        self._upstream, self._ttl = upstream, ttl
        self._verdicts = verdicts if verdicts is not None else MemoryVerdicts(ttl)

    async def refusal(self, meta: CommitMeta, path: str, token: str | None,
                      revision: str | None = None) -> Answer | None:
        """Upstream's refusal for this caller, or None when they may read ``meta``'s repo (its files and,
        for a gated or private repo, its metadata). ``revision``: what a Hub or ModelScope route was asked
        for; offline, a caller refused there gets ``not_in_mirror`` instead (an UpstreamUnavailableError).
        """
        if not self._upstream.offline or revision is None:
            return await self._refusal(meta, path, token)
        try:
            if await self._refusal(meta, path, token) is None:
                return None
        except UpstreamUnavailableError:  # access cannot be checked: refused as well
            pass
        raise not_in_mirror(self._upstream.unavailable_reason, meta.repo, revision)

    async def _refusal(self, meta: CommitMeta, path: str, token: str | None) -> Answer | None:
        if not meta.restricted:
            return None
        member = self._upstream.member(meta.upstream)
        caller = token_key(token) if member is self._upstream.primary else f"{member.name}:{token_key(token)}"
        key = (caller, meta.repo.repo_type, meta.repo.repo_id)  # each upstream's verdicts its own
        verdict = await self._verdicts.get(key)
        if verdict is not None and 0 <= time.time() - verdict.at < self._ttl:
            return verdict.refusal
        probe = path if path in meta.files else next(iter(meta.files), path)
        try:
            answer = await self._upstream.access_probe(meta.repo, meta.commit, probe, token, meta.upstream)
        except UpstreamUnavailableError as exc:
            if verdict is not None:
                return verdict.refusal
            if token is None:  # no need to ask: an anonymous caller reads no gated or private repo
                return anonymous_refusal(meta)
            raise UpstreamUnavailableError(f"{exc}: cannot check access to {meta.repo}, which is gated or "
                                           f"private") from None
        refused = answer.status in (401, 403) or answer.headers.get("X-Error-Code") in REFUSING_CODES
        await self._verdicts.put(key, Verdict(answer if refused else None, time.time()))
        return answer if refused else None
