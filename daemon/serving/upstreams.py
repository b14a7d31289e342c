"""The mirror's upstreams in priority order, answering as one: each question goes to the first upstream
that can answer it, with the fallback rules of ``mreg pull --source auto`` (``registry.upstream.fallback``).

An upstream that cannot be reached, answers 5xx, or (but for the last) does not answer within the
start timeout is passed over, and is passed over at once while the daemon's own health check holds it
down (``registry.upstream.health``: one memory for all of them; a failure, or an upstream too slow to
answer, has the check run). An upstream saying the repo does not exist is passed over for the next.
Every other answer is final: a gated or private repo one upstream refuses is refused, never fetched
from the next. When an upstream that may hold the repo could not be asked, "not found" from the others
is no answer: the question fails as unreachable (the store may still answer it).

A commit belongs to the upstream that listed it (``CommitMeta.upstream``, recorded in the catalog): its
files and its callers' access are asked of that upstream alone.

Tokens go only to the upstream they belong to: a caller's token to the first upstream (the one clients
take the mirror for), an upstream's configured token (the daemon's own: mirror jobs) to that upstream.
Every other upstream is asked anonymously, so it serves a caller only what it serves anyone.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from mreg.registry.errors import UpstreamRefusedError, UpstreamUnavailableError, UsageError
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.client import RepoClient
from mreg.registry.waiting import within

from mreg.daemon.hub.paths import parse_hub_path
from mreg.daemon.serving.upstream import Answer, Upstream

T = TypeVar("T")
MISSING = frozenset({"RepoNotFound"})
"""Error codes that pass a repo question on to the next upstream."""
MISSING_COMMIT = MISSING | {"RevisionNotFound"}
"""…and a commit's listing (a commit pinned by one upstream is not on the others)."""
HOMES_KEPT = 4096
"""(repo, commit) → upstream answers remembered."""


class Upstreams:
    """The configured upstreams, first to last (see the module docstring)."""

    def __init__(self, members: Sequence[Upstream], offline: bool, start_timeout: float) -> None:
        if not members:
            raise UsageError("no upstream is configured")
        self.members = tuple(members)
        self.primary = self.members[0]
        self.offline = offline
        self._start_timeout = start_timeout
        self._by_name = {member.name: member for member in self.members}
        self._homes: OrderedDict[tuple[RepoRef, str], Upstream] = OrderedDict()
        self._checks: set[asyncio.Future[None]] = set()

    async def close(self) -> None:
        """Stop the health checks still running for upstreams that were too slow."""
        for check in self._checks:
            check.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)

    @property
    def endpoint(self) -> str:
        """The first upstream's endpoint (what the mirror stands for)."""
        return self.primary.endpoint

    @property
    def available(self) -> bool:
        """Whether any upstream may be asked now."""
        return any(member.available for member in self.members)

    @property
    def unavailable_reason(self) -> str:
        return "; ".join(dict.fromkeys(member.unavailable_reason for member in self.members))

    def member(self, name: str | None) -> Upstream:
        """The upstream called ``name`` (the first one for None or a name no longer configured)."""
        return self._by_name.get(name or "", self.primary)

    def token_for(self, member: Upstream, token: str | None) -> str | None:
        """What ``member`` is sent for ``token``: a configured token to its own upstream only, any other
        token to the first upstream only."""
        if token is None:
            return None
        owners = [m for m in self.members if m.token is not None and m.token == token]
        return token if (member in owners if owners else member is self.primary) else None

    def client(self, token: str | None, upstream: str | None = None) -> RepoClient:
        """A client of the upstream called ``upstream`` (see `member`), speaking for ``token``."""
        member = self.member(upstream)
        return member.client(self.token_for(member, token))

    async def _first(self, ask: Callable[[Upstream, str | None], Awaitable[T]], token: str | None,
                     passing: frozenset[str]) -> tuple[T, Upstream]:
        """The first answer to ``ask`` and who gave it, passing over the unreachable upstreams and those
        refusing with a code in ``passing``."""
        unreachable: list[str] = []
        missing: UpstreamRefusedError | None = None
        for member in self.members:
            answer = ask(member, self.token_for(member, token))
            try:
                if member is self.members[-1]:
                    return await answer, member
                return await within(answer, self._start_timeout), member
            except TimeoutError:
                unreachable.append(f"{member.endpoint} did not answer within {self._start_timeout:g} s")
                self._check_later(member)
            except UpstreamUnavailableError as exc:
                unreachable.append(str(exc))
            except UpstreamRefusedError as refused:
                if refused.headers.get("X-Error-Code") not in passing:
                    raise
                missing = missing or refused
        if missing is None or unreachable:
            raise UpstreamUnavailableError("; ".join(dict.fromkeys(unreachable)))
        raise missing

    def _check_later(self, member: Upstream) -> None:
        """Have ``member``'s health checked without waiting for the verdict."""
        check = asyncio.ensure_future(member.outages.request_failed())
        self._checks.add(check)

        def forget(done: asyncio.Future[None]) -> None:
            self._checks.discard(done)
            if not done.cancelled():
                done.exception()  # retrieved: nobody waits for it

        check.add_done_callback(forget)

    def remember(self, repo: RepoRef, commit: str, member: Upstream) -> None:
        """``member`` pinned ``commit`` of ``repo``: its listing is asked of ``member``."""
        self._homes[(repo, commit)] = member
        self._homes.move_to_end((repo, commit))
        while len(self._homes) > HOMES_KEPT:
            self._homes.popitem(last=False)

    async def pin(self, repo: RepoRef, revision: str, token: str | None) -> str:
        """The commit ``revision`` is at on the first upstream that has the repo (UpstreamRefusedError: its
        refusal)."""
        commit, member = await self._first(lambda m, t: m.pin(repo, revision, t), token, MISSING)
        self.remember(repo, commit, member)
        return commit

    async def commit_listing(self, repo: RepoRef, commit: str, token: str | None) -> tuple[Any, list[Any], str]:
        """The repo info and tree of ``commit`` (see ``Upstream.commit_listing``) and the name of the
        upstream they come from: the one that pinned it, else the first that has it."""
        home = self._homes.get((repo, commit))
        if home is not None:
            info, entries = await home.commit_listing(repo, commit, self.token_for(home, token))
            return info, entries, home.name
        (info, entries), member = await self._first(lambda m, t: m.commit_listing(repo, commit, t), token,
                                                    MISSING_COMMIT)
        self.remember(repo, commit, member)
        return info, entries, member.name

    async def access_probe(self, repo: RepoRef, commit: str, path: str, token: str | None,
                           upstream: str | None) -> Answer:
        """The answer of the upstream the commit came from to ``token`` reading ``path``."""
        member = self.member(upstream)
        return await member.access_probe(repo, commit, path, self.token_for(member, token))

    async def call(self, method: str, path: str, token: str | None, body: bytes | None = None,
                   content_type: str | None = None) -> Answer:
        """``method path`` sent to the first upstream that answers it (for a repo's route: that has the repo)."""
        hub = parse_hub_path(path)
        passing = MISSING if hub is not None and hub.repo is not None else frozenset()

        async def ask(member: Upstream, member_token: str | None) -> Answer:
            answer = await member.call(method, path, member_token, body, content_type)
            if answer.headers.get("X-Error-Code") in passing:
                raise answer.refused()
            return answer

        try:
            return (await self._first(ask, token, passing))[0]
        except UpstreamRefusedError as refused:  # only a repo missing everywhere gets here
            return Answer.passed_on(refused)
