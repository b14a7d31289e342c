"""The fault soak's clients and what they saw: the real ``huggingface_hub`` client (one thread each) and raw
aiohttp clients (asyncio tasks) that ask for whole files, resume cut ones with Range, and read ranges.

Every attempt ends in one outcome: ``ok`` (byte-exact), a clean failure (an HTTP error with the Hub's JSON
error shape, or a connection the client saw dropped), or a finding: ``corrupt`` (wrong bytes delivered as a
whole answer) or ``unclean`` (any other answer or exception).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx2
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import close_session

from tests.soak_origin import SoakOrigin, Want

ATTEMPTS = 3
"""How often a client tries a file before it gives up on it (each try a fresh request or call)."""
RESUMES = 4
"""How often a raw client resumes a cut body with a Range request within one attempt."""
TIMEOUT = aiohttp.ClientTimeout(total=180, sock_read=60)


@dataclass
class Tally:
    """What every client saw, safe to add to from any thread."""

    outcomes: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    finished: int = 0
    gave_up: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def saw(self, outcome: str, finding: str | None = None) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            if finding is not None:
                self.findings.append(finding)

    def done(self, finished: bool) -> None:
        with self._lock:
            if finished:
                self.finished += 1
            else:
                self.gave_up += 1


def error_shaped(status: int, body: bytes, head: bool) -> bool:
    """Whether an error answer is the Hub's: 4xx/5xx with a JSON ``{"error": ...}`` body (none to a HEAD)."""
    if status < 400:
        return False
    if head and not body:
        return True
    try:
        decoded = json.loads(body)
    except ValueError:
        return False
    return isinstance(decoded, dict) and isinstance(decoded.get("error"), str)


def _http_error(exc: BaseException) -> HfHubHTTPError | None:
    """The HfHubHTTPError with a response in ``exc``'s chain, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, HfHubHTTPError) and getattr(seen, "response", None) is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def hf_attempt(origin: SoakOrigin, url: str, cache: Path, want: Want, tally: Tally) -> bool:
    """One ``hf_hub_download`` of ``want`` through the mirror into a fresh cache; whether it was byte-exact."""
    shutil.rmtree(cache, ignore_errors=True)
    try:
        path = hf_hub_download(want.repo, want.path, revision=want.revision, endpoint=url, cache_dir=cache,
                               etag_timeout=60)
    except Exception as exc:  # noqa: BLE001 (every exception is classified: clean, or a finding)
        http = _http_error(exc)
        if http is not None:
            response = http.response
            body = b"" if response.request.method == "HEAD" else response.content
            if error_shaped(response.status_code, body, response.request.method == "HEAD"):
                tally.saw(f"hf http {response.status_code}")
            else:
                tally.saw("unclean", f"hf {want}: HTTP {response.status_code} {body[:200]!r}")
        elif isinstance(exc, (httpx2.TransportError, OSError)):
            tally.saw("hf dropped")
        else:
            tally.saw("unclean", f"hf {want}: {type(exc).__name__}: {exc}")
        return False
    blob = origin.blob(want.repo, Path(path).parent.name, want.path)  # .../snapshots/<commit>/<file>
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    shutil.rmtree(cache, ignore_errors=True)
    if blob is None or digest != blob.sha256:
        tally.saw("corrupt", f"hf {want}: delivered sha256 {digest}, origin has {blob and blob.sha256}")
        return False
    tally.saw("ok")
    return True


def hf_client(origin: SoakOrigin, url: str, cache: Path, wants: list[Want], tally: Tally) -> None:
    """A thread's work: each file until it is byte-exact, at most ATTEMPTS times."""
    for want in wants:
        tally.done(any(hf_attempt(origin, url, cache, want, tally) for _ in range(ATTEMPTS)))


def close_hf_connections() -> None:
    """Close the connections huggingface_hub keeps alive between calls (its one shared client)."""
    close_session()


def judge_error(response: aiohttp.ClientResponse, body: bytes, tally: Tally, label: str) -> None:
    """Tally an error answer: clean with the Hub's JSON shape (and Retry-After on a 429), else a finding."""
    if response.status == 429 and "Retry-After" not in response.headers:
        tally.saw("unclean", f"{label}: a 429 without Retry-After")
    elif error_shaped(response.status, body, head=False):
        tally.saw(f"raw http {response.status}")
    else:
        tally.saw("unclean", f"{label}: HTTP {response.status} {body[:200]!r}")


class Dropped(Exception):
    """The connection broke mid-answer: the client knows its bytes are short."""


class HungUp(Exception):
    """The client itself left mid-answer."""


async def _get(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytearray,
               tally: Tally, want: Want, give_up_after: int | None = None) -> tuple[int, str, str | None] | None:
    """(status, X-Repo-Commit, Content-Range) of a GET whose body is added to ``body`` as it arrives (a 200
    replaces it); None after an error answer (tallied). Raises Dropped when the connection breaks, HungUp
    when the client itself hangs up after ``give_up_after`` bytes (as a user pressing Ctrl-C)."""
    try:
        async with session.get(url, headers=headers, allow_redirects=False, timeout=TIMEOUT) as response:
            if response.status >= 400:
                judge_error(response, await response.read(), tally, f"raw {want}")
                return None
            if response.status == 200:
                body.clear()
            async for chunk in response.content.iter_any():
                body += chunk
                if give_up_after is not None and give_up_after <= len(body) < (response.content_length or 0):
                    response.close()
                    tally.saw("raw hung up")
                    raise HungUp
            return response.status, response.headers.get("X-Repo-Commit", ""), response.headers.get("Content-Range")
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
        raise Dropped(str(exc)) from exc


async def whole_attempt(origin: SoakOrigin, session: aiohttp.ClientSession, base: str, want: Want,
                        tally: Tally, hang_up: int | None = None) -> bool:
    """A whole file, resumed with ``Range: bytes=N-`` after a cut as curl -C does (a 200 starts it over);
    with ``hang_up``, the first request is abandoned after that many bytes, then resumed."""
    url = f"{base}/{want.repo}/resolve/{want.revision}/{want.path}"
    got = bytearray()
    for _ in range(RESUMES + 1):
        had = len(got)
        try:
            answer = await _get(session, url, {"Range": f"bytes={had}-"} if had else {}, got, tally, want, hang_up)
        except HungUp:
            hang_up = None
            continue
        except Dropped:
            tally.saw("raw dropped")
            continue
        if answer is None:
            return False
        status, commit, content_range = answer
        if status == 206 and (content_range is None or not content_range.startswith(f"bytes {had}-")):
            tally.saw("unclean", f"raw {want}: Content-Range {content_range} after {had} bytes")
            return False
        if status not in (200, 206):
            tally.saw("unclean", f"raw {want}: status {status}")
            return False
        break
    else:
        return False
    blob = origin.blob(want.repo, commit, want.path)
    if blob is None or hashlib.sha256(got).hexdigest() != blob.sha256:
        tally.saw("corrupt", f"raw {want}@{commit}: {len(got)} bytes not the origin's {blob}")
        return False
    tally.saw("ok")
    return True


async def range_attempt(origin: SoakOrigin, session: aiohttp.ClientSession, base: str, want: Want, start: int,
                        end: int, tally: Tally) -> bool:
    """Bytes [start, end) of a file: a 206 of exactly those bytes (or, after a failed transfer, the whole file)."""
    url = f"{base}/{want.repo}/resolve/{want.revision}/{want.path}"
    body = bytearray()
    try:
        answer = await _get(session, url, {"Range": f"bytes={start}-{end - 1}"}, body, tally, want)
    except Dropped:
        tally.saw("raw dropped")
        return False
    if answer is None:
        return False
    status, commit, content_range = answer
    blob = origin.blob(want.repo, commit, want.path)
    if blob is None:
        tally.saw("unclean", f"raw range {want}: unknown commit {commit!r}")
        return False
    expected = blob.read() if status == 200 else blob.read(start, end)
    if status == 206 and content_range != f"bytes {start}-{end - 1}/{blob.size}":
        tally.saw("unclean", f"raw range {want}: Content-Range {content_range} for {start}-{end - 1}")
        return False
    if body != expected:
        tally.saw("corrupt", f"raw range {want}@{commit} {start}-{end - 1}: status {status}, wrong bytes")
        return False
    tally.saw("ok")
    return True


async def missing_attempt(session: aiohttp.ClientSession, base: str, want: Want, tally: Tally) -> None:
    """A file the commit does not have: the Hub's 404 (EntryNotFound, JSON), whatever upstream is going through."""
    url = f"{base}/{want.repo}/resolve/{want.revision}/missing-{want.path}"
    try:
        async with session.get(url, allow_redirects=False, timeout=TIMEOUT) as response:
            body = await response.read()
            code = response.headers.get("X-Error-Code")
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError):
        tally.saw("raw dropped")
        return
    if response.status == 404 and code == "EntryNotFound" and error_shaped(404, body, head=False):
        tally.saw("raw missing 404")
    elif response.status != 404:  # upstream trouble while the mirror learnt the commit's files, or a finding
        judge_error(response, body, tally, f"raw missing {want}")
    else:
        tally.saw("unclean", f"raw missing {want}: 404 with X-Error-Code {code}: {body[:200]!r}")


async def raw_client(origin: SoakOrigin, base: str, wants: list[Want], rng: random.Random, tally: Tally,
                     unverifiable: frozenset[str]) -> None:
    """An asyncio client's work: each file whole (resumed) or a range of it, until byte-exact or ATTEMPTS.

    Bounded ranges of a file not yet stored are relayed from upstream unverified (nothing can check a part
    of a file against its hash), so they are not asked of the contents in ``unverifiable`` (the sha256s of
    the one transfer the origin corrupts on purpose)."""
    async with aiohttp.ClientSession() as session:
        if rng.random() < 0.2:
            await missing_attempt(session, base, wants[0], tally)
        for want in wants:
            blob = origin.blob(want.repo, want.revision, want.path)
            span = None
            if blob is not None and blob.sha256 not in unverifiable and rng.random() < 0.4:
                start = rng.randrange(blob.size)
                span = (start, rng.randrange(start + 1, min(blob.size, start + 300_000) + 1))
            finished = False
            for _ in range(ATTEMPTS):
                if span is not None:
                    finished = await range_attempt(origin, session, base, want, *span, tally)
                else:
                    want_now = Want(want.repo, "main", want.path) if rng.random() < 0.2 else want
                    hang_up = rng.randrange(1, 1 << 20) if rng.random() < 0.15 else None
                    finished = await whole_attempt(origin, session, base, want_now, tally, hang_up)
                if finished:
                    break
            tally.done(finished)
