"""Pulling from the first upstream that works, and remembering the ones that did not.

With several upstreams (``--source auto``) each is asked for the repo in turn; one that cannot be
reached, times out, answers 5xx after its retries, or does not answer within the start timeout is
passed over for the next, and remembered as down (``registry.upstream.health``) for a while, during which it is tried last. A repo or revision an upstream does not have is
an answer, not an outage: that error ends the pull. The upstreams not remembered as down also serve
as mirror sources of the pull (``registry.upstream.extra_sources``): a large file one of them lists with the same
sha256 is fetched from the chosen upstream and from it at once, in proportion to their speeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import aiohttp

from mreg.registry.errors import UpstreamUnavailableError, UsageError
from mreg.registry.gguf.pull import GGUFChoice, pull_model
from mreg.registry.upstream.http import RetryPolicy
from mreg.registry.upstream.hub import HubClient
from mreg.registry.upstream.modelscope import ModelScopeClient
from mreg.registry.pull import NullProgress, PullOptions, PullProgress, PullResult
from mreg.registry.repo import RepoRef
from mreg.registry.upstream.client import RepoClient
from mreg.registry.store import Store
from mreg.registry.upstream.configured import Upstream
from mreg.registry.upstream.health import Health
from mreg.registry.waiting import within

if TYPE_CHECKING:
    from mreg.registry.catalog import Catalog
    from mreg.registry.local import CatalogOnDemand


def client_for(session: aiohttp.ClientSession, upstream: Upstream, retry: RetryPolicy = RetryPolicy()) -> RepoClient:
    """The client speaking ``upstream``'s protocol with its token."""
    cls = ModelScopeClient if upstream.kind == "modelscope" else HubClient
    return cls(session, upstream.url, upstream.token, retry)


def _reason(exc: BaseException) -> str:
    return "no answer in time" if isinstance(exc, asyncio.TimeoutError) else str(exc)


async def pull_from(upstreams: Sequence[Upstream], repo: RepoRef, quant: str | None, options: PullOptions, *,
                    session: aiohttp.ClientSession, store: Store, catalog: Catalog | CatalogOnDemand,
                    health: Health, start_timeout: float, retry: RetryPolicy = RetryPolicy(),
                    progress: PullProgress = NullProgress(),
                    announce: Callable[[str], None] = lambda _: None,
                    ) -> tuple[PullResult, GGUFChoice | None, Upstream]:
    """Pull from the first of ``upstreams`` (down ones last) that works; return what it served."""
    if not upstreams:
        raise UsageError("no upstream to pull from")
    queue = health.order(upstreams)
    remember = len(queue) > 1  # health only orders a choice: a single upstream is always asked
    for index, upstream in enumerate(queue):
        last = index == len(queue) - 1
        client = client_for(session, upstream, retry)
        others = tuple(client_for(session, u, retry) for u in queue
                       if u is not upstream and health.down(u.name) is None) if remember else ()
        try:
            if not last and not options.offline:
                await within(client.repo_info(repo, options.revision), start_timeout)
            chosen = replace(options, upstream=upstream.name, mirrors=options.mirrors + others)
            result, choice = await pull_model(repo, quant, chosen, client=client, store=store, catalog=catalog,
                                              progress=progress, announce=announce)
        except (TimeoutError, UpstreamUnavailableError) as exc:
            if remember:
                health.mark_down(upstream.name, _reason(exc))
            if last:
                raise
            announce(f"{upstream.label} is unavailable ({_reason(exc)}); trying {queue[index + 1].label}")
            continue
        if result.source == "local" and not last and not options.offline:
            health.mark_down(upstream.name, "unreachable")
            announce(f"{upstream.label} is unreachable; trying {queue[index + 1].label}")
            continue
        if result.source == "upstream" and remember:
            health.mark_up(upstream.name)
        return result, choice, upstream
    raise UpstreamUnavailableError("no upstream could serve the pull")
