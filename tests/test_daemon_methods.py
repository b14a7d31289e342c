"""Every route of the daemon's table, asked with every method it does not take, answers 405 with an
``Allow`` header naming the ones it does, in its surface's error shape: the catalog API's for the
daemon's own routes, the Hub's for Hub routes, ModelScope's for ModelScope routes. A test walks the
table, so a new route or method is covered (or the test names the route it has no sample path for)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from mreg.daemon import routes
from mreg.daemon.hub.paths import parse_hub_path
from mreg.daemon.modelscope.paths import parse_ms_path
from tests.daemons import Daemon, raw, running_daemon
from tests.testhub import TestHub

pytestmark = pytest.mark.timeout(120)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HUB_SAMPLES = {
    "search": "/api/models",
    "info": "/api/models/org/name",
    "tree": "/api/datasets/org/name/tree/main/sub",
    "paths-info": "/api/models/org/name/paths-info/main",
    "refs": "/api/models/org/name/refs",
    "whoami": "/api/whoami-v2",
    "resolve": "/org/name/resolve/main/config.json",
}
"""A path of each Hub route kind."""
MODELSCOPE_SAMPLES = {
    "info": "/api/v1/models/org/name",
    "revisions": "/api/v1/models/org/name/revisions",
    "files": "/api/v1/datasets/org/name/repo/tree",
    "file": "/api/v1/models/org/name/repo?FilePath=config.json",
    "acceleration": "/api/v1/repos/internalAccelerationInfo",
}
"""A path of each ModelScope route kind."""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with TestHub() as hub:
        yield from running_daemon(hub, tmp_path_factory.mktemp("methods"))


def own_sample(template: str) -> str:
    """A path an own route's template matches: ``org/name`` for a repo id, ``abc`` for other parameters."""
    return re.sub(r"\{[^}/]+\}", "abc", template.replace(routes.REPO, "org/name"))


def declared(table: dict[tuple[str, str], object], kind: str) -> set[str]:
    return {method for route_kind, method in table if route_kind == kind}


def routes_walked() -> Iterator[tuple[str, str, set[str]]]:
    """(surface, sample path, methods it takes) for every route in the daemon's tables."""
    for path, methods in routes.own_methods().items():
        yield "own", own_sample(path), set(methods)
    for kind, path in HUB_SAMPLES.items():
        parsed = parse_hub_path(path)
        assert parsed is not None and parsed.kind == kind, path
        yield "hub", path, declared(routes.HUB_ROUTES, kind)
    for kind, path in MODELSCOPE_SAMPLES.items():
        parsed = parse_ms_path(path)
        assert parsed is not None and parsed.kind == kind, path
        yield "modelscope", path, declared(routes.MODELSCOPE_ROUTES, kind)


def test_the_samples_cover_every_route_kind() -> None:
    assert set(HUB_SAMPLES) == {kind for kind, _ in routes.HUB_ROUTES}
    assert set(MODELSCOPE_SAMPLES) == {kind for kind, _ in routes.MODELSCOPE_ROUTES}
    assert {path for surface, path, _ in routes_walked() if surface == "own"} == {
        own_sample(route.path) for route in routes.OWN_ROUTES}


def error_shape(surface: str, body: bytes) -> str:
    """The message of a 405 body, checked against its surface's error shape."""
    answer = json.loads(body)
    if surface == "own":
        assert set(answer) == {"error", "code"} and answer["code"] == "MethodNotAllowed", answer
        return str(answer["error"])
    if surface == "hub":
        assert set(answer) == {"error"}, answer
        return str(answer["error"])
    assert (answer["Code"], answer["Success"], answer["Data"]) == (405, False, None), answer
    return str(answer["Message"])


def test_every_route_refuses_the_methods_it_does_not_take(daemon: Daemon) -> None:
    walked = 0
    for surface, path, allowed in routes_walked():
        for method in sorted(set(METHODS) - allowed):
            status, headers, body = raw(method, daemon.url + path)
            assert status == 405, (method, path, status, body[:200])
            assert set(headers["Allow"].split(", ")) == allowed, (method, path, headers["Allow"])
            if surface == "hub":
                assert headers["X-Error-Code"] == "MethodNotAllowed"
            if method != "HEAD":
                assert error_shape(surface, body) == f"method {method} is not allowed here: use {headers['Allow']}"
            walked += 1
    assert walked > 80


def test_own_gets_answer_head(daemon: Daemon) -> None:
    get, head = daemon.get("/healthz"), daemon.head("/healthz")
    assert (get[0], head[0], head[1]["Content-Type"], head[2]) == (200, 200, get[1]["Content-Type"], b"")


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/v1/repos", "GET, HEAD"),
    ("PUT", "/api/models/x/y", "GET, HEAD"),
    ("POST", "/v1/repos/org/name", "GET, HEAD"),  # not 415: no route here takes a POST
    ("GET", "/v1/jobs/sync", "POST"),
    ("POST", "/api/v1/models/org/name/repo", "GET, HEAD"),
])
def test_the_issues_examples(daemon: Daemon, method: str, path: str, allow: str) -> None:
    status, headers, _ = raw(method, daemon.url + path)
    assert (status, headers["Allow"]) == (405, allow)


def test_a_post_a_route_takes_still_needs_json(daemon: Daemon) -> None:
    status, _, body = raw("POST", daemon.url + "/v1/jobs/sync")
    message = "send the request body as JSON (Content-Type: application/json)"
    assert (status, json.loads(body)) == (415, {"error": message})
