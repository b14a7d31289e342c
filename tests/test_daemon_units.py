"""The daemon's pure parts: Hub path routing, JSON/header reshaping, Range parsing, a transfer's rules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mreg.daemon.catalog.openapi import PATHS
from mreg.daemon.routes import OWN_ROUTES, REPO
from mreg.daemon.serving.bodies import ByteRange, parse_range
from mreg.daemon.hub.shapes import (
    info_view,
    info_without_xet,
    paths_info_view,
    rewrite_link,
    tree_view,
    without_xet,
)
from mreg.daemon.hub.paths import HubPath, parse_hub_path
from mreg.daemon.serving.transfers import Transfer
from mreg.daemon.serving.upstream import token_key
from mreg.registry.download import FileSpec
from mreg.registry.download.state import Part
from mreg.registry.errors import RangeNotSatisfiableError, TransferFailedError, UsageError
from mreg.registry.repo import RepoRef

MODEL = RepoRef("model", "org/name")


@pytest.mark.parametrize(("raw", "expected"), [
    ("/api/models/org/name", HubPath("info", MODEL)),
    ("/api/models/gpt2/revision/main?blobs=true", HubPath("info", RepoRef("model", "gpt2"), "main")),
    ("/api/models/org/name/revision/refs%2Fpr%2F1", HubPath("info", MODEL, "refs/pr/1")),
    ("/api/datasets/org/name/tree/main/data/sub?recursive=true",
     HubPath("tree", RepoRef("dataset", "org/name"), "main", "data/sub")),
    ("/api/models/org/name/tree/v1.0", HubPath("tree", MODEL, "v1.0")),
    ("/api/models/org/name/paths-info/abc", HubPath("paths-info", MODEL, "abc")),
    ("/api/models/org/name/refs", HubPath("refs", MODEL)),
    ("/api/whoami-v2", HubPath("whoami")),
    ("/org/name/resolve/main/a/b%20c.txt", HubPath("resolve", MODEL, "main", "a/b c.txt")),
    ("/gpt2/resolve/refs%2Fpr%2F1/config.json", HubPath("resolve", RepoRef("model", "gpt2"), "refs/pr/1", "config.json")),
    ("/datasets/org/name/resolve/main/x.csv", HubPath("resolve", RepoRef("dataset", "org/name"), "main", "x.csv")),
    ("/org/name/resolve/main/", None),
    ("/org/name/resolve/main", None),
    ("/api/spaces/org/name", None),
    ("/api/models?search=smol&limit=2", HubPath("search")),
    ("/api/datasets", HubPath("search")),
    ("/api/spaces", None),
    ("/api/models/org/name/refs/extra", None),
    ("/api/models/a/b/c/d", None),
    ("/", None),
])
def test_hub_paths_route_by_their_markers(raw: str, expected: HubPath | None) -> None:
    assert parse_hub_path(raw) == expected


def test_a_malformed_repo_id_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_hub_path("/api/models/org/..bad/revision/main")


@pytest.mark.parametrize("raw", [
    "/api/models/org/name/revision/a%0Ab", "/api/models/org/name/revision/a..b", "/api/models/org/name/tree/%20x",
    "/api/models/org/name/tree/x~1/sub", "/api/models/org/name/paths-info/%00", "/org/name/resolve/a%3Ab/f.txt",
    "/org/name/resolve/%2Fmain/f.txt", "/org/name/resolve/x.lock/f.txt", "/api/models/org/name/revision/" + "a" * 256,
])
def test_a_revision_git_could_not_name_is_a_usage_error(raw: str) -> None:
    with pytest.raises(UsageError, match="invalid revision"):
        parse_hub_path(raw)


def test_the_openapi_document_describes_exactly_the_api_routes_of_the_table() -> None:
    """Every route of the daemon's own table but its pages and the document itself is documented, and the
    document names no route the daemon does not serve."""
    served = {(route.method.lower(), route.path.replace(REPO, "{org}/{name}")) for route in OWN_ROUTES
              if route.path not in ("/", "/openapi.json") and not route.path.startswith("/-/")}
    documented = {(method, path) for path, operations in PATHS.items() for method in operations}
    assert served == documented


def test_xet_hashes_and_links_are_stripped_and_pages_point_at_the_mirror() -> None:
    entries = [{"type": "file", "path": "w.bin", "xetHash": "ab" * 32, "lfs": {"oid": "c" * 64}}, "odd"]
    assert without_xet(entries) == [{"type": "file", "path": "w.bin", "lfs": {"oid": "c" * 64}}, "odd"]
    assert info_without_xet({"siblings": [{"rfilename": "w", "xetHash": "x"}]}) == {"siblings": [{"rfilename": "w"}]}
    link = ('<https://hub.example/prefix/api/models/o/n/tree/main?recursive=true&cursor=4>; rel="next", '
            '<https://hub.example/api/models/o/n/xet-read-token/abc>; rel="xet-auth"')
    assert rewrite_link(link, "https://hub.example/prefix", "http://127.0.0.1:8700") == (
        '<http://127.0.0.1:8700/api/models/o/n/tree/main?recursive=true&cursor=4>; rel="next"')
    assert rewrite_link('<https://x/y>; rel="xet-reconstruction-info"', "https://x", "http://m") is None


def test_kept_answers_are_shaped_like_the_hubs() -> None:
    info = {"_id": "1", "id": "o/n", "sha": "s", "siblings": [{"rfilename": "a", "size": 1, "blobId": "b"}]}
    assert info_view(info, blobs=False, expand=[])["siblings"] == [{"rfilename": "a"}]
    assert info_view(info, blobs=True, expand=[]) == info
    assert info_view(info, blobs=True, expand=["sha"]) == {"_id": "1", "id": "o/n", "sha": "s"}
    entries = [{"type": "directory", "path": "d"}, {"type": "file", "path": "d/x"}, {"type": "directory", "path": "d/e"},
               {"type": "file", "path": "d/e/y"}, {"type": "file", "path": "top"}]
    assert [e["path"] for e in tree_view(entries, "", recursive=False) or []] == ["d", "top"]
    assert [e["path"] for e in tree_view(entries, "d", recursive=False) or []] == ["d/x", "d/e"]
    assert len(tree_view(entries, "", recursive=True) or []) == 5
    assert tree_view(entries, "top", recursive=False) is None and tree_view(entries, "nope", recursive=True) is None
    assert [e["path"] for e in paths_info_view(entries, ["top", "nope", "d", "top"])] == ["top", "d"]


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-9", ByteRange(0, 10)), ("bytes=5-", ByteRange(5, 100)), ("bytes=-10", ByteRange(90, 100)),
    ("bytes=90-500", ByteRange(90, 100)), ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=9-3", None),
    ("bytes=x-1", None),
])
def test_ranges(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=200-300"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(header, 100)


def test_tokens_are_known_only_by_their_hash() -> None:
    assert token_key(None) == "anonymous"
    assert token_key("hf_secret") != token_key("hf_other") and "hf_secret" not in token_key("hf_secret")


def written(transfer: Transfer, parts: list[Part], done: list[int]) -> None:
    """The download of ``transfer`` has written ``done`` bytes of each of ``parts``."""
    for part, n in zip(parts, done):
        part.done = n
    transfer.readers.changed()


async def test_a_transfer_holds_back_the_last_byte_until_verified(tmp_path: Path) -> None:
    transfer = Transfer(FileSpec("w.bin", 10, "0" * 40, "a" * 64), tmp_path / "partial")
    parts = [Part(0, 10)]
    transfer.readers.bind(parts, lambda pos: None)
    waiter = asyncio.create_task(transfer.wait_past(0))
    await asyncio.sleep(0)
    assert not waiter.done()
    written(transfer, parts, [4])
    assert await waiter == 4
    written(transfer, parts, [10])
    assert await transfer.wait_past(4) == 9  # everything written, not yet verified
    last = asyncio.create_task(transfer.wait_past(9))
    await asyncio.sleep(0)
    assert not last.done()
    transfer.succeed("a" * 64)
    assert await last == 10


async def test_a_range_of_a_transfer_is_sent_as_written_but_its_last_byte_only_once_verified(tmp_path: Path) -> None:
    transfer = Transfer(FileSpec("w.bin", 30, "0" * 40, "a" * 64), tmp_path / "partial")
    parts, wanted = [Part(0, 10), Part(10, 10), Part(20, 10)], []
    transfer.readers.bind(parts, wanted.append)
    waiter = asyncio.create_task(transfer.wait_past(12, 18))
    await asyncio.sleep(0)
    assert not waiter.done() and wanted == [12]  # the download is asked for byte 12 first
    written(transfer, parts, [0, 5, 0])
    assert await waiter == 15  # bytes 12..14 are written: no need for the prefix before them
    written(transfer, parts, [0, 10, 10])
    assert await transfer.wait_past(15, 18) == 17  # the range's last byte waits for the verification
    assert await transfer.wait_past(20, 30) == 29
    last = asyncio.create_task(transfer.wait_past(17, 18))
    await asyncio.sleep(0)
    assert not last.done() and not transfer.readers.written_from(0)
    transfer.succeed("a" * 64)
    assert await last == 18


async def test_a_failed_transfer_fails_its_readers(tmp_path: Path) -> None:
    transfer = Transfer(FileSpec("w.bin", 10, "0" * 40, "a" * 64), tmp_path / "partial")
    parts = [Part(0, 10)]
    transfer.readers.bind(parts, lambda pos: None)
    written(transfer, parts, [10])
    waiter = asyncio.create_task(transfer.wait_past(9))
    await asyncio.sleep(0)
    transfer.fail("sha256 mismatch")
    with pytest.raises(TransferFailedError, match="sha256 mismatch"):
        await waiter


def test_logs_are_json_lines() -> None:
    import io
    import json
    import logging

    from mreg.daemon.logs import setup_logging

    stream = io.StringIO()
    setup_logging(stream)
    try:
        logging.getLogger("mreg.daemon").info("mirroring %s", "http://hub")
        logging.getLogger("alembic").info("hidden")
    finally:
        logging.basicConfig(force=True)
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "info" and entry["logger"] == "mreg.daemon" and entry["message"] == "mirroring http://hub"


async def test_failed_content_is_shared_through_the_catalog_for_an_hour_and_expires(catalog_url: str) -> None:
    """#14.1 across restarts and replicas: what one daemon's ``FailedContent`` remembers, another on the same
    catalog knows, for ``memory`` seconds; remembering deletes what is past its memory."""
    from datetime import timedelta

    from mreg.daemon.serving.transfers import FailedContent
    from mreg.registry.catalog import Catalog
    from mreg.registry.catalog.models import utcnow
    from tests.postgres import fetch_rows

    now = [utcnow()]
    first, second = await Catalog.open(catalog_url), await Catalog.open(catalog_url)
    try:
        here, replica = (FailedContent(c, memory=3600.0, clock=lambda: now[0]) for c in (first, second))
        key = "a" * 64
        await here.remember(key)
        assert await replica.recent(key) and await here.recent(key) and not await replica.recent("b" * 64)
        now[0] += timedelta(seconds=3599)
        assert await replica.recent(key)
        now[0] += timedelta(seconds=2)
        assert not await replica.recent(key)  # forgotten after `memory` seconds
        await replica.remember("git-" + "c" * 40)
        rows = await fetch_rows(catalog_url, "SELECT key FROM failed_transfers")
        assert rows == [("git-" + "c" * 40,)]  # the expired row went as a new one was written
        await replica.remember("git-" + "c" * 40)  # the same content failing again: one row, the newer time
        assert len(await fetch_rows(catalog_url, "SELECT key FROM failed_transfers")) == 1
        with pytest.raises(UsageError):
            await first.remember_failed_transfer("../x", utcnow(), timedelta(hours=1))
    finally:
        await first.close()
        await second.close()
