"""The catalog API of `mreg serve` on a real daemon whose catalog clients filled through it: the
OpenAPI document validates, every operation it lists answers as it says (each body validated against
its schema), `/v1/search` is `mreg search`, and gated/private repos are shown only to callers upstream
lets read them. The daemon's catalog is a SQLite file, then a PostgreSQL database (`module_catalog_url`)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from typing import Any

import jsonschema
import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.ggufs import gguf_bytes
from tests.daemons import ROOT, Daemon, running_daemon, wait_for
from tests.test_daemon import GGUF, MINILM, SMOLLM
from tests.testhub import TestHub, dataset_repo, small_repo
from tests.testhub.fixtures import TOKENS
from tests.testhub.repos import minilm_repo, smollm_repo

pytestmark = pytest.mark.timeout(180)

ALICE, BOB, OWNER = "hf_test_alice", "hf_test_bob", "hf_test_owner"
GATED, PRIVATE, DATASET = "testorg/gated-gguf", "testorg/private", "testorg/tiny-dataset"
GATED_GGUF = "gated-Q8_0.gguf"
INDEX_DEADLINE = 30.0
OPENAPI_URI = "urn:mreg:openapi"


@pytest.fixture(scope="module")
def hub() -> Iterator[TestHub]:
    with TestHub(tokens=TOKENS) as running:
        running.add_repo(minilm_repo())
        running.add_repo(smollm_repo())
        running.add_repo(dataset_repo(DATASET))
        running.add_repo(small_repo(GATED, {"config.json": '{"model_type": "llama"}\n', GATED_GGUF: gguf_bytes("Q8_0")},
                                    gated="manual", allowed_users={"alice"}))
        running.add_repo(small_repo(PRIVATE, private=True))
        yield running


@pytest.fixture(scope="module")
def daemon(hub: TestHub, tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str) -> Iterator[Daemon]:
    """The mirror, filled by real clients: MiniLM, the SmolLM2 GGUF, a dataset's CSV, a gated repo (by
    alice) and a private one (by its owner); returns once every weights file is indexed."""
    tmp = tmp_path_factory.mktemp("catalog")
    for running in running_daemon(hub, tmp, database_url=module_catalog_url):
        cache = tmp / "clients"
        snapshot_download(MINILM, cache_dir=cache, endpoint=running.url, token=False)
        hf_hub_download(SMOLLM, GGUF, cache_dir=cache, endpoint=running.url, token=False)
        hf_hub_download(DATASET, "data/test.csv", repo_type="dataset", cache_dir=cache, endpoint=running.url,
                        token=False)
        snapshot_download(GATED, cache_dir=cache / "alice", endpoint=running.url, token=ALICE)
        snapshot_download(PRIVATE, cache_dir=cache / "owner", endpoint=running.url, token=OWNER)
        wait_for(lambda: len(get_json(running, "/v1/search?min_params=1", OWNER)[1]) == 3, INDEX_DEADLINE,
                 "the weights of MiniLM, SmolLM2 and the gated repo indexed")
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get_json(daemon: Daemon, path: str, token: str | None = None) -> tuple[int, Any]:
    status, _, body = daemon.get(path, bearer(token) if token else None)
    return status, json.loads(body)


def mreg_json(home: Path, database_url: str, *args: str) -> Any:
    """`python -m cli.main --database-url DATABASE_URL ARGS --json` on ``home``, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MREG_"))}
    env.update(MREG_HOME=str(home), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "mreg.cli.main", "--database-url", database_url, *args, "--json"],
                          cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_the_openapi_document_validates(daemon: Daemon) -> None:
    status, document = get_json(daemon, "/openapi.json")
    assert status == 200
    validate_spec(document)
    assert document["openapi"].startswith("3.1")
    assert {"/healthz", "/metrics", "/v1/repos", "/v1/repos/{org}/{name}", "/v1/search"} <= set(document["paths"])


@dataclass(frozen=True)
class Call:
    """One request of the walk through the document: the operation it exercises and what must answer."""

    template: str
    path: str
    status: int
    token: str | None = None
    method: str = "get"
    body: Any = None


NEVER = "testorg/never-seen"
# Every documented operation is called at least once with a 2xx answer; documented errors too.
CALLS = [
    Call("/healthz", "/healthz", 200),
    Call("/metrics", "/metrics", 200),
    Call("/v1/repos", "/v1/repos", 200),
    Call("/v1/repos", "/v1/repos", 200, OWNER),
    Call("/v1/repos", "/v1/repos?sort=size", 400),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{MINILM}", 200),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{SMOLLM}?revision=main", 200),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{DATASET}?repo_type=dataset", 200),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{GATED}", 200, ALICE),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{GATED}", 401),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{GATED}", 403, BOB),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{PRIVATE}", 404, ALICE),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{NEVER}", 404),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{MINILM}?revision=v9", 404),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{MINILM}?repo_type=space", 400),
    Call("/v1/repos/{org}/{name}", f"/v1/repos/{DATASET}", 404),
    Call("/v1/repos/{org}/{name}/files", f"/v1/repos/{MINILM}/files", 200),
    Call("/v1/repos/{org}/{name}/files", f"/v1/repos/{PRIVATE}/files", 200, OWNER),
    Call("/v1/repos/{org}/{name}/files", f"/v1/repos/{PRIVATE}/files", 404),
    Call("/v1/repos/{org}/{name}/tensors", f"/v1/repos/{SMOLLM}/tensors?limit=5", 200),
    Call("/v1/repos/{org}/{name}/tensors", f"/v1/repos/{MINILM}/tensors?path=model.safetensors&offset=100", 200),
    Call("/v1/repos/{org}/{name}/tensors", f"/v1/repos/{GATED}/tensors", 200, ALICE),
    Call("/v1/repos/{org}/{name}/tensors", f"/v1/repos/{GATED}/tensors", 403, BOB),
    Call("/v1/repos/{org}/{name}/tensors", f"/v1/repos/{MINILM}/tensors?path=config.json", 404),
    Call("/v1/repos/{org}/{name}/tensors", f"/v1/repos/{MINILM}/tensors?limit=0", 400),
    Call("/v1/repos/{org}/{name}/tensors", f"/v1/repos/{MINILM}/tensors?offset=-1", 400),
    Call("/v1/repos/{org}/{name}/modelfile", f"/v1/repos/{SMOLLM}/modelfile", 200),
    Call("/v1/repos/{org}/{name}/modelfile", f"/v1/repos/{SMOLLM}/modelfile?quant=Q2_K", 404),
    Call("/v1/repos/{org}/{name}/modelfile", f"/v1/repos/{SMOLLM}/modelfile?quant=q4%3Bk", 400),
    Call("/v1/repos/{org}/{name}/modelfile", f"/v1/repos/{NEVER}/modelfile", 401),  # as the Hub: unknown = refused
    Call("/v1/search", "/v1/search", 200),
    Call("/v1/search", "/v1/search?format=gguf&min_params=100M&max_params=1B&arch=LLAMA&quant=q4_1&text=smol", 200),
    Call("/v1/search", "/v1/search?min_params=lots", 400),
    Call("/v1/search", "/v1/search?format=onnx", 400),
    Call("/v1/search", "/v1/search?format=gguf&format=safetensors", 400),
    Call("/v1/search", "/v1/search?q=smol", 400),
    Call("/v1/jobs", "/v1/jobs", 201, method="post", body={"repo": MINILM, "every": "6h", "include": "*.json"}),
    Call("/v1/jobs", "/v1/jobs", 201, method="post", body={"repo": NEVER, "repo_type": "dataset"}),
    Call("/v1/jobs", "/v1/jobs", 400, method="post", body={"repo": MINILM, "every": "sometimes"}),
    Call("/v1/jobs", "/v1/jobs", 400, method="post", body=["not", "an", "object"]),
    Call("/v1/jobs", "/v1/jobs", 200),
    Call("/v1/jobs/{org}/{name}", f"/v1/jobs/{MINILM}", 200),
    Call("/v1/jobs/{org}/{name}", f"/v1/jobs/{SMOLLM}", 404),
    Call("/v1/jobs/{org}/{name}/sync", f"/v1/jobs/{MINILM}/sync", 200, method="post"),
    Call("/v1/jobs/{org}/{name}/sync", f"/v1/jobs/{SMOLLM}/sync", 404, method="post"),
    Call("/v1/jobs/sync", "/v1/jobs/sync", 200, method="post"),
    Call("/v1/jobs/{org}/{name}", f"/v1/jobs/{NEVER}?repo_type=dataset", 200, method="delete"),
    Call("/v1/jobs/{org}/{name}", f"/v1/jobs/{NEVER}?repo_type=dataset", 404, method="delete"),
    Call("/v1/pins", "/v1/pins", 201, method="post", body={"repo": MINILM}),
    Call("/v1/pins", "/v1/pins", 200, method="post", body={"repo": MINILM}),
    Call("/v1/pins", "/v1/pins", 201, method="post", body={"repo": SMOLLM, "revision": "main"}),
    Call("/v1/pins", "/v1/pins", 400, method="post", body={"repo": SMOLLM, "revision": "v9"}),
    Call("/v1/pins", "/v1/pins", 200),
    Call("/v1/pins", f"/v1/pins?repo={MINILM}", 200, method="delete"),
    Call("/v1/pins", f"/v1/pins?repo={MINILM}", 404, method="delete"),
    Call("/v1/convert", "/v1/convert", 202, method="post", body={"repo": MINILM, "quant": "q8_0"}),
    Call("/v1/convert", "/v1/convert", 400, method="post", body={"repo": MINILM, "quant": "q9_z"}),
    Call("/v1/convert", "/v1/convert", 401, method="post", body={"repo": NEVER, "quant": "q8_0"}),
    Call("/v1/convert/{id}", "/v1/convert/{convert_id}", 200),
    Call("/v1/convert/{id}", "/v1/convert/0123456789abcdef", 404),
    Call("/v1/repos", "/v1/repos", 200),
]
CONVERT_ID = "{convert_id}"
"""Stands for the id the last `POST /v1/convert` answered in a call's path."""


def request(daemon: Daemon, call: Call) -> tuple[int, http.client.HTTPMessage, bytes]:
    """``call`` sent to ``daemon``: (status, headers, body)."""
    parts = urlsplit(daemon.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    headers = {"Authorization": f"Bearer {call.token}"} if call.token else {}
    body = None if call.body is None else json.dumps(call.body).encode()
    if body is None and call.method == "post":
        body = b"{}"  # the daemon's POST routes take JSON only
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(call.method.upper(), call.path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def pointer(*parts: str) -> str:
    """A JSON pointer to ``parts`` (RFC 6901 escaping)."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def schema_validator(document: dict[str, Any], *location: str) -> jsonschema.Draft202012Validator:
    """A validator of the schema at ``location`` in the OpenAPI ``document``; its ``#/components/...``
    references resolve in the document."""
    registry = Registry().with_resource(OPENAPI_URI, Resource.from_contents(document, DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"{OPENAPI_URI}#{pointer(*location)}"}, registry=registry)


def test_every_documented_route_answers_as_documented(daemon: Daemon) -> None:
    _, document = get_json(daemon, "/openapi.json")
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert {(c.template, c.method) for c in CALLS} == operations
    assert {(c.template, c.method) for c in CALLS if c.status < 300} == operations
    convert_id = ""
    for call in CALLS:
        call = dataclasses.replace(call, path=call.path.replace(CONVERT_ID, convert_id))
        status, headers, body = request(daemon, call)
        assert status == call.status, (call, body[:300])
        documented = document["paths"][call.template][call.method]["responses"]
        assert str(status) in documented, (call, status)
        content_type = headers["Content-Type"].split(";")[0]
        content = documented[str(status)]["content"]
        assert content_type in content, (call, content_type)
        instance = json.loads(body) if content_type == "application/json" else body.decode()
        check = schema_validator(document, "paths", call.template, call.method, "responses", str(status), "content",
                                 content_type, "schema")
        errors = list(check.iter_errors(instance))
        assert not errors, (call, [e.message[:300] for e in errors[:3]])
        if call.template == "/v1/convert" and status < 300:
            convert_id = instance["id"]
    mirrored = {r["repo"]: r["mirror"] for r in get_json(daemon, "/v1/repos")[1]}
    assert mirrored[MINILM]["every"] == 6 * 3600 and mirrored[SMOLLM] is None


def listed(daemon: Daemon, token: str | None = None) -> list[str]:
    status, repos = get_json(daemon, "/v1/repos", token)
    assert status == 200
    return [r["repo"] for r in repos]


def test_the_repo_list_holds_what_clients_fetched(daemon: Daemon, hub: TestHub) -> None:
    assert listed(daemon) == [DATASET, SMOLLM, MINILM]  # datasets first, then by id; no gated or private repo
    assert listed(daemon, ALICE) == [DATASET, SMOLLM, MINILM, GATED]
    assert listed(daemon, BOB) == listed(daemon, "hf_refused_token") == [DATASET, SMOLLM, MINILM]
    assert listed(daemon, OWNER) == [DATASET, SMOLLM, MINILM, GATED, PRIVATE]
    repos = {r["repo"]: r for r in get_json(daemon, "/v1/repos")[1]}
    minilm = repos[MINILM]
    head = hub.repo(MINILM).head
    sizes = [entry.blob.size for entry in head.files.values()]
    assert (minilm["commit"], minilm["refs"], minilm["complete"]) == (head.sha, ["main"], True)
    assert (minilm["files"], minilm["stored_files"], minilm["size"], minilm["stored_size"]) == (
        len(sizes), len(sizes), sum(sizes), sum(sizes))
    assert (minilm["architecture"], minilm["formats"], minilm["quants"]) == ("BertModel", ["safetensors"], [])
    assert minilm["parameters"] == hub.repo(MINILM).info["safetensors"]["total"]
    smollm = repos[SMOLLM]
    assert smollm["files"] == 3 and smollm["stored_size"] >= hub.repo(SMOLLM).head.files[GGUF].blob.size
    assert (smollm["architecture"], smollm["parameters"], smollm["formats"], smollm["quants"], smollm["mirror"]) == (
        "llama", 134515008, ["gguf"], ["Q4_1"], None)
    dataset = repos[DATASET]
    csv = hub.repo(DATASET, "dataset").head.files["data/test.csv"].blob.size
    assert (dataset["repo_type"], dataset["complete"], dataset["files"], dataset["stored_files"]) == ("dataset", False, 3, 1)
    assert (dataset["stored_size"], dataset["parameters"], dataset["formats"]) == (csv, 0, [])


def test_a_repo_in_detail(daemon: Daemon, hub: TestHub) -> None:
    commit = hub.repo(SMOLLM).head.sha
    status, detail = get_json(daemon, f"/v1/repos/{SMOLLM}?revision={commit[:7]}")
    assert status == 200 and detail["commit"] == commit
    assert detail["quant_sets"] == [{"name": GGUF, "label": "Q4_1", "files": [GGUF], "stored": True, "complete": True,
                                     "size": hub.repo(SMOLLM).head.files[GGUF].blob.size}]
    assert detail["gguf"]["file_type"] == "Q4_1" and detail["gguf"]["architecture"] == "llama"
    assert detail["context_length"] == 8192 and detail["chat_template"].startswith("{%")
    assert set(detail["memory"]) == {"F16", "Q8_0", "Q4_K_M"} and detail["memory"]["F16"] > 2 * 134515008
    assert sum(detail["parameters_by_dtype"].values()) == detail["parameters"]
    _, files = get_json(daemon, f"/v1/repos/{SMOLLM}/files")
    header = next(f["header"] for f in files["files"] if f["path"] == GGUF)
    assert sum(detail["tensors_by_dtype"].values()) == header["tensor_count"] > 0
    assert header["quant"] == "Q4_1" and header["parameters"] == 134515008
    assert [(r["commit"], r["refs"]) for r in detail["revisions"]] == [(commit, ["main"])]
    assert detail["usage"]["hf_download"] == f"HF_ENDPOINT={daemon.url} hf download {SMOLLM}"
    assert detail["usage"]["modelfile_url"] == f"{daemon.url}/v1/repos/{SMOLLM}/modelfile"
    _, dataset = get_json(daemon, f"/v1/repos/{DATASET}?repo_type=dataset")
    assert dataset["usage"] == {
        "hf_download": f"HF_ENDPOINT={daemon.url} hf download {DATASET} --repo-type dataset",
        "mreg_pull": f"HF_ENDPOINT={daemon.url} mreg pull {DATASET} --repo-type dataset"}


def test_tensors_come_in_pages(daemon: Daemon) -> None:
    _, files = get_json(daemon, f"/v1/repos/{MINILM}/files")
    count = next(f["header"]["tensor_count"] for f in files["files"] if f["path"] == "model.safetensors")
    names: list[str] = []
    offset: int | None = 0
    while offset is not None:
        status, page = get_json(daemon, f"/v1/repos/{MINILM}/tensors?limit=37&offset={offset}")
        assert status == 200 and page["total"] == count and len(page["tensors"]) <= 37
        names += [t["name"] for t in page["tensors"]]
        offset = page["next_offset"]
    assert len(names) == len(set(names)) == count > 37
    _, one = get_json(daemon, f"/v1/repos/{MINILM}/tensors?path=model.safetensors&offset={count - 1}")
    assert [t["name"] for t in one["tensors"]] == names[-1:] and one["next_offset"] is None
    _, past = get_json(daemon, f"/v1/repos/{MINILM}/tensors?offset={count + 5}")
    assert past["tensors"] == [] and past["total"] == count


@pytest.mark.parametrize("filters", [{}, {"text": "Smol", "arch": "LLAMA", "format": "gguf", "quant": "q4_1",
                                          "min_params": "100M", "max_params": "1B"}])
def test_search_is_mreg_search(daemon: Daemon, module_catalog_url: str, filters: dict[str, str]) -> None:
    """Owner sees every repo, as the local CLI does; others see what upstream lets them."""
    query = urlencode(filters)
    flags = [filters["text"]] if "text" in filters else []
    flags += [arg for name, value in filters.items() if name != "text" for arg in (f"--{name.replace('_', '-')}", value)]
    cli = mreg_json(daemon.home, module_catalog_url, "search", *flags)
    assert cli
    assert get_json(daemon, f"/v1/search?{query}", OWNER) == (200, cli)
    hidden = {GATED, PRIVATE}
    assert get_json(daemon, f"/v1/search?{query}") == (200, [hit for hit in cli if hit["repo"] not in hidden])


def test_errors_have_one_shape_and_private_repos_look_unknown(daemon: Daemon) -> None:
    assert get_json(daemon, "/v1/repos/testorg/never-seen") == (
        404, {"error": "testorg/never-seen is not in the mirror's catalog", "code": "RepoNotFound"})
    for path in (f"/v1/repos/{PRIVATE}", f"/v1/repos/{PRIVATE}?revision=nope", f"/v1/repos/{PRIVATE}/tensors"):
        assert get_json(daemon, path, BOB) == (
            404, {"error": f"{PRIVATE} is not in the mirror's catalog", "code": "RepoNotFound"})
    assert get_json(daemon, f"/v1/repos/{MINILM}?revision=nope") == (
        404, {"error": f"{MINILM} has no revision 'nope' in the mirror's catalog", "code": "RevisionNotFound"})
    status, body = get_json(daemon, f"/v1/repos/{GATED}/files")
    assert (status, body["code"]) == (401, "GatedRepo") and GATED_GGUF not in json.dumps(body)
    assert get_json(daemon, "/v1/search?max_params=7Q") == (400, {
        "error": "invalid parameter count '7Q': use a number like 22713728, 500M or 7B", "code": "BadRequest"})
    assert get_json(daemon, "/v1/repos/bad..name") == (400, {
        "error": "invalid repo id 'bad..name': expected 'org/name' of letters, digits, '-', '_' or '.'",
        "code": "BadRequest"})
