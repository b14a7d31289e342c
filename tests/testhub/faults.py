"""Switchable faults and request statistics of the test hub; both are safe to use from any thread.

Route kinds: "api" (repo info, paths-info, refs, whoami), "tree", "resolve" (hub file answers) and
"cdn" (the LFS host). Fault rules name a route: "api" (api and tree), "resolve", "cdn" or "any".
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass

DEFAULT_URL_TTL = 3600
RECORDS_KEPT = 10_000
_ROUTES = ("api", "resolve", "cdn", "any")


def route_matches(rule_route: str, kind: str) -> bool:
    """Whether a fault rule for `rule_route` applies to a request of route kind `kind`."""
    return rule_route == "any" or rule_route == kind or (rule_route == "api" and kind == "tree")


@dataclass
class _Rule:
    route: str
    count: int | None  # None = forever


@dataclass
class FailRule(_Rule):
    status: int
    retry_after: int | None


@dataclass
class CutRule(_Rule):
    after_bytes: int


@dataclass
class StallRule(_Rule):
    after_bytes: int
    seconds: float


@dataclass
class CorruptRule(_Rule):
    target: str | None  # a blob sha256 or a repo path; None = every body


@dataclass
class DropRule(_Rule):
    path_contains: str  # only requests whose raw path contains this ("" = every one)


class Faults:
    """What the hub does wrong. Rules fire on the next matching requests, `count` times each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.throttle: int | None = None
        """Per-response cap on body bytes per second (None = unlimited)."""
        self.url_ttl: int = DEFAULT_URL_TTL
        """Seconds the signed CDN URLs issued from now on stay valid (negative: already expired)."""
        self.latency: float = 0.0
        """Seconds every hub and CDN request waits before it is answered (0 = none); the wait is
        asynchronous, so concurrent requests wait at the same time, as round trips to a far server do."""
        self.bandwidth: int | None = None
        """Cap on the body bytes per second of every response together, as a server's link (None = unlimited)."""
        self._link_free_at = 0.0
        self.fired: Counter[str] = Counter()
        """How many times each kind of rule fired ("fail 503", "cut", "stall", "corrupt", "drop") since the start."""

    def reset(self) -> None:
        """Drop every rule; unlimited speed; default URL lifetime; no latency."""
        with self._lock:
            self._rules.clear()
            self.throttle = None
            self.url_ttl = DEFAULT_URL_TTL
            self.latency = 0.0
            self.bandwidth = None

    def _add(self, rule: _Rule) -> None:
        if rule.route not in _ROUTES:
            raise ValueError(f"route must be one of {_ROUTES}, not {rule.route!r}")
        with self._lock:
            self._rules.append(rule)

    def fail(self, status: int, count: int = 1, route: str = "any", retry_after: int | None = None) -> None:
        """The next `count` matching requests answer `status` (429 adds Retry-After and RateLimit)."""
        self._add(FailRule(route, count, status, retry_after))

    def cut_body(self, after_bytes: int, count: int = 1, route: str = "cdn") -> None:
        """The next `count` bodies announce their full length, send `after_bytes` bytes, then abort."""
        self._add(CutRule(route, count, after_bytes))

    def stall(self, after_bytes: int, seconds: float, count: int = 1, route: str = "cdn") -> None:
        """The next `count` bodies send `after_bytes` bytes, then hang `seconds` before going on."""
        self._add(StallRule(route, count, after_bytes, seconds))

    def corrupt(self, sha256_or_path: str | None = None, count: int | None = None, route: str = "any") -> None:
        """Flip bytes in served bodies: all of them, or only that blob (by sha256 or by a repo path)."""
        self._add(CorruptRule(route, count, sha256_or_path))

    def drop(self, path_contains: str = "", count: int | None = 1, route: str = "any") -> None:
        """The next `count` matching hub requests (whose raw path contains `path_contains`) get no answer:
        their connection is closed, as a server does with a request it cannot parse."""
        self._add(DropRule(route, count, path_contains))

    def link_delay(self, n: int) -> float:
        """Reserve the link for `n` body bytes; the seconds to wait before sending them under `bandwidth`."""
        with self._lock:
            if not self.bandwidth:
                return 0.0
            now = time.monotonic()
            self._link_free_at = max(self._link_free_at, now) + n / self.bandwidth
            return self._link_free_at - now

    def take(self, cls: type[_Rule], kind: str, names: Collection[str] = ()) -> _Rule | None:
        """Consume one use of the first rule of type `cls` matching a request of route `kind`.

        `names` are what a body is known by (sha256, repo paths; the raw path of a request for DropRule);
        they only matter to CorruptRule and DropRule.
        """
        with self._lock:
            for rule in self._rules:
                if type(rule) is not cls or not route_matches(rule.route, kind):
                    continue
                if isinstance(rule, CorruptRule) and rule.target is not None and rule.target not in names:
                    continue
                if isinstance(rule, DropRule) and not any(rule.path_contains in name for name in names):
                    continue
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                self.fired[_kind(rule)] += 1
                return rule
        return None


def _kind(rule: _Rule) -> str:
    """How `Faults.fired` counts a rule: "fail <status>" or the fault's verb."""
    if isinstance(rule, FailRule):
        return f"fail {rule.status}"
    return type(rule).__name__.removesuffix("Rule").lower()


@dataclass(frozen=True)
class Record:
    """One request as the hub saw it."""

    host: str  # "hub" or "cdn"
    method: str
    path: str
    status: int
    range: str | None
    authorization: str | None = None
    """The Authorization header it came with."""


class Stats:
    """Counters of what the hub served; read them from tests at any time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter and forget the records."""
        with self._lock:
            self.requests: Counter[str] = Counter()
            self.cdn_bytes = 0
            self.resolve_bytes = 0
            self.bytes_by_sha256: Counter[str] = Counter()
            self.cdn_authorization_seen: list[str] = []
            self.records: deque[Record] = deque(maxlen=RECORDS_KEPT)
            self.dropped: list[str] = []
            """``METHOD path`` of each request a drop fault left unanswered (not in ``records``)."""

    def request(self, kind: str, record: Record, authorization: bool) -> None:
        """Count a finished request of route kind `kind`."""
        with self._lock:
            self.requests[kind] += 1
            self.records.append(record)
            if kind == "cdn" and authorization:
                self.cdn_authorization_seen.append(f"{record.method} {record.path}")

    def drop(self, method: str, path: str) -> None:
        """Count a request left unanswered."""
        with self._lock:
            self.dropped.append(f"{method} {path}")

    def body_bytes(self, kind: str, sha256: str, n: int) -> None:
        """Count `n` body bytes of blob `sha256` handed to the transport."""
        with self._lock:
            if kind == "cdn":
                self.cdn_bytes += n
            else:
                self.resolve_bytes += n
            self.bytes_by_sha256[sha256] += n

    def find(self, host: str | None = None, method: str | None = None, path_contains: str = "") -> list[Record]:
        """The kept records matching every given criterion."""
        with self._lock:
            return [
                r
                for r in self.records
                if host in (None, r.host) and method in (None, r.method) and path_contains in r.path
            ]
