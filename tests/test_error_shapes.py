"""Every error mreg raises on purpose, on every surface.

The tree drawn in ``registry/errors.py`` is the classes (no exception class lives elsewhere), and each
class's exit code, HTTP status and API code are pinned here, with the exact answer each surface
gives: the CLI (click's runner), and the Hub routes, ModelScope routes, catalog API and catalog page
of a real daemon app on a real socket (one handler per surface raises the error under test; the
routing and error answering around it are the daemon's own). Real requests then show the same
shapes arising from real failures.
"""

from __future__ import annotations

import dataclasses

import html
import importlib
import inspect
import json
import pkgutil
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import click
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from mreg.cli.common import _run
from mreg.daemon import routes
from mreg.daemon.app import build_app
from mreg.daemon.catalog import api as catalog_api
from mreg.daemon.catalog import pages
from mreg.daemon.config import ServeConfig
from mreg.registry import errors
from mreg.registry.config import Settings
from mreg.registry.errors import MregError
from mreg.registry.repo import RepoRef
from tests.mreg_cli import mreg as run_mreg
from tests.testhub import TestHub
from tests.testhub.repos import minilm_repo

pytest_plugins = ("tests.mreg_env",)
pytestmark = pytest.mark.timeout(120)

ROWS: dict[str, tuple[int, int, str]] = {
    "MregError": (1, 500, "InternalError"),
    "UsageError": (2, 400, "BadRequest"),
    "RangeNotSatisfiableError": (2, 416, "RangeNotSatisfiable"),
    "MethodNotAllowedError": (2, 405, "MethodNotAllowed"),
    "UpstreamError": (3, 502, "UpstreamError"),
    "RepoNotFoundError": (3, 404, "RepoNotFound"),
    "RevisionNotFoundError": (3, 404, "RevisionNotFound"),
    "EntryNotFoundError": (3, 404, "EntryNotFound"),
    "QuantNotFoundError": (3, 404, "EntryNotFound"),
    "NoGGUFError": (3, 404, "EntryNotFound"),
    "GatedRepoError": (3, 403, "GatedRepo"),
    "UpstreamRefusedError": (3, 404, "RepoNotFound"),  # upstream's status and code (the instance below)
    "LocationExpiredError": (3, 502, "UpstreamError"),
    "TransferFailedError": (3, 502, "UpstreamError"),
    "UpstreamUnavailableError": (3, 504, "UpstreamUnavailable"),
    "IntegrityError": (4, 502, "IntegrityError"),
    "UnsafePathError": (4, 502, "UnsafePath"),
    "FormatError": (4, 422, "FormatError"),
    "StoreError": (5, 500, "StoreError"),
    "StoreUnavailableError": (5, 503, "StoreUnavailable"),
    "BlobDeletedError": (5, 503, "StoreUnavailable"),
    "StoreUnsupportedError": (5, 501, "NotSupported"),
    "CatalogError": (5, 500, "CatalogError"),
}
"""Each class: (CLI exit code, HTTP status, API code). Changing one changes what users see."""
REFUSAL_HEADERS = {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found",
                   "Content-Type": "application/json"}
REFUSAL_BODY = b'{"error":"Repository not found"}'


def instance(name: str) -> MregError:
    """An error of class ``name`` with a message that needs escaping on a page."""
    message = f"{name} <b>happened</b> to org/model"
    if name == "NoGGUFError":
        return errors.NoGGUFError(RepoRef.parse("org/model"), message)
    if name == "UpstreamRefusedError":
        return errors.UpstreamRefusedError(404, REFUSAL_HEADERS, REFUSAL_BODY)
    if name == "MethodNotAllowedError":
        return errors.MethodNotAllowedError(message, ("GET", "HEAD"))
    if name == "GatedRepoError/401":
        return errors.GatedRepoError(message, 401)
    return getattr(errors, name)(message)


CASES = [*ROWS, "GatedRepoError/401"]


def row(name: str) -> tuple[int, int, str]:
    return (3, 401, "GatedRepo") if name == "GatedRepoError/401" else ROWS[name]


# -- the tree ------------------------------------------------------------------------------------------

TREE_ROW = re.compile(r"^    ([│├└─ ]*)(\w+)\s+(\d)\s+(\d{3}|4xx)\s+(\S+)")


def drawn_tree() -> dict[str, tuple[str | None, int, str, str]]:
    """The docstring's rows: class → (parent, exit code, status, code) as drawn."""
    drawn: dict[str, tuple[str | None, int, str, str]] = {}
    stack: list[str] = []
    assert errors.__doc__ is not None
    for line in errors.__doc__.splitlines():
        match = TREE_ROW.match(line)
        if match is None:
            continue
        glyphs, name, exit_code, status, code = match.groups()
        depth = len(glyphs) // 4
        del stack[depth:]
        drawn[name] = (stack[-1] if stack else None, int(exit_code), status, code)
        stack.append(name)
    return drawn


def test_the_drawn_tree_is_the_classes_with_their_rows() -> None:
    public = {name: cls for name, cls in vars(errors).items()
              if inspect.isclass(cls) and issubclass(cls, MregError)}
    drawn = drawn_tree()
    assert sorted(drawn) == sorted(public) == sorted(ROWS)
    for name, (parent, exit_code, status, code) in drawn.items():
        cls = public[name]
        assert (cls.__base__.__name__ if parent else None, cls.exit_code) == (parent, exit_code), name
        if name == "UpstreamRefusedError":
            assert (status, code) == ("4xx", "(upstream's)")
        else:
            assert (int(status), code) == (cls.http_status, cls.code) == ROWS[name][1:], name
            assert cls.exit_code == ROWS[name][0], name


def mreg_modules() -> Iterator[Any]:
    for package in ("mreg.registry", "mreg.daemon", "mreg.cli"):
        root = importlib.import_module(package)
        yield root
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            yield importlib.import_module(info.name)


def test_no_exception_class_lives_outside_the_tree() -> None:
    """Other modules define only private exceptions that stay inside them (or carry their parent's row)."""
    outside = []
    for module in mreg_modules():
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                if module is errors:
                    continue
                private = name.startswith("_") and not any(k in vars(cls) for k in ("exit_code", "http_status", "code"))
                if not private:
                    outside.append(f"{module.__name__}.{name}")
    assert outside == []


# -- the CLI -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CASES)
def test_cli_answers_one_line_and_the_exit_code(name: str) -> None:
    exc = instance(name)

    @click.command()
    @_run
    async def failing() -> None:
        raise exc

    result = CliRunner().invoke(failing, [], catch_exceptions=False)
    assert (result.exit_code, result.stdout, result.stderr) == (row(name)[0], "", f"mreg: error: {exc}\n")


def test_cli_real_failures(mreg_env: dict[str, str]) -> None:
    assert run_mreg("pull", "a/b/c") == (2, "", "mreg: error: invalid repo id 'a/b/c': expected 'org/name' of "
                                                "letters, digits, '-', '_' or '.'\n")
    code, out, err = run_mreg("pull", "testorg/missing")
    assert (code, out) == (3, "") and err.startswith("mreg: error: ") and err.count("\n") == 1


# -- the daemon ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raising(request: web.Request, *_: object) -> web.Response:
    """The handler every surface runs here: it raises the error named by ``?error=``."""
    raise instance(request.query["error"])


@pytest.fixture(scope="module")
def hub() -> Iterator[TestHub]:
    with TestHub() as running:
        running.add_repo(minilm_repo())
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def daemon(hub: TestHub, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A real daemon app whose whoami (Hub), acceleration (ModelScope), ``/v1/repos`` (API) and ``/``
    (page) handlers raise; its URL."""
    home = tmp_path_factory.mktemp("errors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(routes.HUB_ROUTES, ("whoami", "GET"), raising)
        patch.setitem(routes.HUB_ROUTES, ("whoami", "HEAD"), raising)
        patch.setitem(routes.MODELSCOPE_ROUTES, ("acceleration", "GET"), raising)
        raising_own = {"/v1/repos": catalog_api.json_errors(raising), "/": pages.html_errors(raising)}
        patch.setattr(routes, "OWN_ROUTES", tuple(
            dataclasses.replace(r, handler=raising_own[r.path]) if r.method == "GET" and r.path in raising_own else r
            for r in routes.OWN_ROUTES))
        settings = Settings(home=home, database_url=f"sqlite+aiosqlite:///{home / 'catalog.db'}",
                            endpoint=hub.endpoint, offline=False)
        server = TestServer(build_app(ServeConfig(upstream=hub.endpoint, port=0), settings), host="127.0.0.1")
        await server.start_server()
        try:
            yield str(server.make_url("")).rstrip("/")
        finally:
            await server.close()


async def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers, allow_redirects=False) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())


def said(name: str) -> str:
    """The message a Hub or ModelScope route says: a 5xx names the mirror."""
    exc = instance(name)
    return f"mirror: {exc}" if row(name)[1] >= 500 else str(exc)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", CASES)
async def test_hub_routes(daemon: str, name: str) -> None:
    reply = await fetch(f"{daemon}/api/whoami-v2?error={name}")
    _, status, code = row(name)
    if name == "UpstreamRefusedError":  # upstream's answer, unchanged
        assert (reply.status, reply.body) == (404, REFUSAL_BODY)
        assert {k: reply.headers[k] for k in REFUSAL_HEADERS} == REFUSAL_HEADERS
        return
    assert (reply.status, reply.json()) == (status, {"error": said(name)})
    assert (reply.headers["X-Error-Code"], reply.headers["X-Error-Message"]) == (code, said(name))
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    head = await fetch(f"{daemon}/api/whoami-v2?error={name}", "HEAD")
    assert (head.status, head.headers["X-Error-Code"], head.body) == (status, code, b"")


MS_MESSAGES = {"UpstreamRefusedError": "Repository not found (a private one needs a token that upstream accepts)"}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", CASES)
async def test_modelscope_routes(daemon: str, name: str) -> None:
    reply = await fetch(f"{daemon}/api/v1/repos/internalAccelerationInfo?error={name}")
    status = row(name)[1]
    body = reply.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body.pop("RequestId"))
    assert (reply.status, body) == (status, {"Code": status, "Data": None, "Success": False,
                                             "Message": MS_MESSAGES.get(name, said(name))})


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", CASES)
async def test_catalog_api(daemon: str, name: str) -> None:
    reply = await fetch(f"{daemon}/v1/repos?error={name}")
    _, status, code = row(name)
    message = "Repository not found" if name == "UpstreamRefusedError" else str(instance(name))
    assert (reply.status, reply.json()) == (status, {"error": message, "code": code})
    assert reply.headers["Content-Type"] == "application/json"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", CASES)
async def test_catalog_page(daemon: str, name: str) -> None:
    reply = await fetch(f"{daemon}/?error={name}")
    _, status, code = row(name)
    page = reply.body.decode()
    assert (reply.status, reply.headers["Content-Type"]) == (status, "text/html; charset=utf-8")
    assert f"<h1>{status} {code}</h1>\n<p>{html.escape(str(instance(name)))}</p>" in page
    assert "<b>happened</b>" not in page


@pytest.mark.asyncio(loop_scope="module")
async def test_real_failures_have_the_same_shapes(daemon: str) -> None:
    missing = await fetch(f"{daemon}/api/models/testorg/missing")  # upstream's refusal (anonymous: 401), passed on
    assert (missing.status, missing.headers["X-Error-Code"]) == (401, "RepoNotFound")

    bad = await fetch(f"{daemon}/api/models/a/b/c/d")
    assert (bad.status, bad.headers.get("X-Error-Code")) == (404, None)  # no such Hub route: the Hub's own 404

    info = (await fetch(f"{daemon}/api/models/sentence-transformers/all-MiniLM-L6-v2")).json()
    commit = info["sha"]
    past = await fetch(f"{daemon}/sentence-transformers/all-MiniLM-L6-v2/resolve/main/config.json",
                       headers={"Range": "bytes=99999999-"})
    assert (past.status, past.json()) == (416, {"error": "Requested Range Not Satisfiable"})
    assert {k: past.headers[k] for k in ("X-Error-Code", "X-Error-Message", "X-Repo-Commit")} == {
        "X-Error-Code": "RangeNotSatisfiable", "X-Error-Message": "Requested Range Not Satisfiable",
        "X-Repo-Commit": commit}
    assert re.fullmatch(r"bytes \*/\d+", past.headers["Content-Range"])

    ms = await fetch(f"{daemon}/api/v1/models/testorg/missing")
    body = ms.json()
    assert (ms.status, body["Code"], body["Success"], body["Message"]) == (
        404, 404, False, MS_MESSAGES["UpstreamRefusedError"])

    api = await fetch(f"{daemon}/v1/repos/testorg/missing/files")
    assert (api.status, api.json()) == (404, {"error": "testorg/missing is not in the mirror's catalog",
                                              "code": "RepoNotFound"})
    unknown = await fetch(f"{daemon}/v1/search?colour=red")
    assert (unknown.status, unknown.json()["code"]) == (400, "BadRequest")

    page = await fetch(f"{daemon}/-/repos/testorg/missing")
    assert page.status == 404 and "<h1>404 RepoNotFound</h1>\n<p>testorg/missing is not in the mirror&#39;s " \
                                  "catalog</p>" in page.body.decode()


def test_readme_exit_codes_are_the_trees() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    line = re.search(r"Exit codes: (.*?)\n\n", readme, re.S)
    assert line is not None
    stated = {int(n) for n in re.findall(r"(\d+) [a-z]", line.group(1))}
    assert stated == {0, 130} | {exit_code for exit_code, _, _ in ROWS.values()}
