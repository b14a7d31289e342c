"""``GET /openapi.json``: the OpenAPI 3.1 document of the daemon's own routes (the Hub routes it
mirrors are the Hub's, not described here).

The schemas are strict (``additionalProperties: false``): ``tests/test_catalog_api.py`` calls every
operation listed here on a running daemon and validates each answer against them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mreg.registry import __version__
from mreg.registry.catalog.search import FORMATS
from mreg.registry.repo import MAX_REVISION, NAME_PATTERN, REPO_ID_PATTERN

from mreg.daemon.hub.answers import json_answer

JSON = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """A closed object: the ``required`` properties, and ``optional`` ones that may be absent."""
    return {"type": "object", "properties": {**required, **(optional or {})}, "required": list(required),
            "additionalProperties": False}


STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer", "minimum": 0}
COUNTS: Schema = {"type": "object", "additionalProperties": INT}
COMMIT: Schema = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
REPO_ID: Schema = {"type": "string", "pattern": REPO_ID_PATTERN, "description": "`org/name` (or `name`)",
                   "examples": ["HuggingFaceTB/SmolLM2-135M-Instruct"]}

REVISION_FIELDS: dict[str, Schema] = {
    "repo": {**STRING, "description": "`org/name` (or `name`)"},
    "repo_type": {"enum": ["model", "dataset"]},
    "commit": COMMIT,
    "refs": {"type": "array", "items": STRING, "description": "branches and tags pointing at the commit"},
    "complete": {"type": "boolean", "description": "every file of the revision is stored"},
    "files": INT, "size": {**INT, "description": "bytes of every file of the revision"},
    "stored_files": INT, "stored_size": {**INT, "description": "bytes of the files stored"},
    "updated_at": {"type": "string", "format": "date-time"},
    "last_used": nullable({"type": "string", "format": "date-time", "description": "last use by a pull or a client"}),
    "pinned": {"type": "boolean", "description": "pinned (`mreg pin`): never evicted"},
    "mirrored": {"type": "boolean", "description": "the repo has a mirror job: never evicted"},
}
REPO_FIELDS: dict[str, Schema] = {
    **REVISION_FIELDS,
    "architecture": nullable(STRING),
    "parameters": {**INT, "description": "from the indexed headers (0 when none are indexed)"},
    "formats": {"type": "array", "items": {"enum": list(FORMATS)}},
    "quants": {"type": "array", "items": STRING, "description": "GGUF file types read from the headers"},
    "mirror": nullable(ref("MirrorStatus")),
}
JOB_STATUS: Schema = {"enum": ["queued", "running", "done", "failed"]}
TIME: Schema = nullable({"type": "string", "format": "date-time"})
JOB_FIELDS: dict[str, Schema] = {
    "status": JOB_STATUS,
    "revision": {**STRING, "description": "the branch or tag followed (or a pinned commit)"},
    "every": nullable({"type": "number", "exclusiveMinimum": 0, "description": "seconds between syncs; null: once"}),
    "bytes_done": INT, "bytes_total": {**INT, "description": "bytes of the files the current or last sync stores"},
    "commit": nullable(COMMIT), "last_sync": TIME, "next_sync": TIME,
}
SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": {**STRING, "description": "one line"},
                  "code": {**STRING, "description": "the error's kind: its class's code in registry/errors.py",
                           "examples": ["BadRequest", "RepoNotFound", "RevisionNotFound", "EntryNotFound",
                                        "GatedRepo", "UpstreamError", "UpstreamUnavailable", "InternalError"]}}),
    "Health": obj({"status": {"const": "ok"}, "upstream": {**STRING, "description": "the first upstream's URL"},
                   "upstream_available": {"type": "boolean", "description": "whether any upstream may be asked"},
                   "offline": {"type": "boolean"},
                   "upstreams": {"type": "array", "description": "every upstream, in the order they are asked",
                                 "items": obj({"name": STRING, "kind": {"enum": ["hf", "modelscope"]},
                                               "url": STRING, "available": {"type": "boolean"},
                                               "down": {**nullable(STRING),
                                                        "description": "why it counts as down, or null"}})}}),
    "HubError": obj({"error": STRING}),
    "Revision": obj(REVISION_FIELDS),
    "MirrorStatus": obj(JOB_FIELDS),
    "Job": obj({"repo": STRING, "repo_type": {"enum": ["model", "dataset"]}, **JOB_FIELDS,
                "include": {"type": "array", "items": STRING}, "exclude": {"type": "array", "items": STRING},
                "error": nullable(STRING),
                "replica": nullable({**STRING, "description": "the replica running it (from its lease); null unless running"})}),
    "NewJob": {"type": "object", "required": ["repo"], "properties": {
        "repo": REPO_ID, "revision": {**STRING, "default": "main"},
        "repo_type": {"enum": ["model", "dataset"], "default": "model"},
        "include": {"oneOf": [STRING, {"type": "array", "items": STRING}]},
        "exclude": {"oneOf": [STRING, {"type": "array", "items": STRING}]},
        "every": nullable({"oneOf": [{"type": "number", "exclusiveMinimum": 0},
                                     {"type": "string", "examples": ["30m", "6h", "1d"]}]})}},
    "Conversion": obj({"id": STRING, "repo": STRING, "commit": COMMIT, "quant": STRING,
                       "status": {"enum": ["running", "complete", "failed"]}},
                      {"path": {**STRING, "description": "the GGUF in the mirror's store (complete jobs)"},
                       "sha256": SHA256, "size": INT, "error": {**STRING, "description": "one line (failed jobs)"}}),
    "NewConversion": obj({"repo": REPO_ID, "quant": {**STRING, "examples": ["q4_k_m", "q8_0", "f16"]}},
                         {"revision": {**STRING, "default": "main"}}),
    "Repo": obj(REPO_FIELDS),
    "RepoDetail": obj({
        **REPO_FIELDS,
        "parameters_by_dtype": COUNTS,
        "tensors_by_dtype": COUNTS,
        "context_length": nullable(INT),
        "memory": {"type": "object", "additionalProperties": INT,
                   "description": "bytes to run it at F16, Q8_0 and Q4_K_M: weights plus an F16 KV cache"},
        "gguf": nullable({"type": "object", "description": "GGUF metadata highlights of its first GGUF file"}),
        "chat_template": nullable(STRING),
        "quant_sets": {"type": "array", "items": ref("QuantSet")},
        "revisions": {"type": "array", "items": ref("Revision"),
                      "description": "complete ones first, newest first"},
        "usage": obj({"hf_download": STRING, "mreg_pull": STRING},
                     {"mreg_modelfile": STRING, "modelfile_url": STRING}),
    }),
    "QuantSet": obj({"name": STRING, "label": nullable(STRING), "files": {"type": "array", "items": STRING},
                     "size": INT, "complete": {"type": "boolean", "description": "every part of a split set is there"},
                     "stored": {"type": "boolean"}}),
    "Header": obj({"format": {"enum": list(FORMATS)}, "tensor_count": nullable(INT), "parameters": nullable(INT),
                   "dtypes": COUNTS, "header_bytes": nullable(INT), "quant": nullable(STRING),
                   "error": nullable(STRING)}),
    "File": obj({"path": STRING, "size": INT, "stored": {"type": "boolean"}, "git_oid": STRING,
                 "lfs_sha256": nullable(SHA256), "sha256": nullable(SHA256), "header": nullable(ref("Header"))}),
    "Files": obj({"repo": STRING, "repo_type": {"enum": ["model", "dataset"]}, "commit": COMMIT,
                  "files": {"type": "array", "items": ref("File")}}),
    "Tensor": obj({"path": {**STRING, "description": "the file holding it"}, "name": STRING, "dtype": STRING,
                   "shape": {"type": "array", "items": INT}, "offset": INT, "nbytes": INT}),
    "TensorPage": obj({"repo": STRING, "repo_type": {"enum": ["model", "dataset"]}, "commit": COMMIT,
                       "path": nullable(STRING), "total": INT, "offset": INT, "limit": INT,
                       "next_offset": nullable(INT), "tensors": {"type": "array", "items": ref("Tensor")}}),
    "NewPin": obj({"repo": STRING, "repo_type": {"enum": ["model", "dataset"]},
                   "revision": nullable({**COMMIT, "description": "the pinned commit (null: the whole repo)"})}),
    "Pin": obj({"repo": STRING, "repo_type": {"enum": ["model", "dataset"]},
                "revision": nullable({**COMMIT, "description": "the pinned commit (null: the whole repo)"}),
                "pinned_at": {"type": "string", "format": "date-time"}}),
    "SearchHit": obj({"repo": STRING, "repo_type": {"enum": ["model", "dataset"]}, "commit": COMMIT,
                      "architecture": nullable(STRING), "parameters": INT,
                      "formats": {"type": "array", "items": {"enum": list(FORMATS)}},
                      "quants": {"type": "array", "items": STRING}}),
}


def query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or STRING}


def path_param(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema or STRING}


def json_response(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Schema]:
    meaning = {400: "a parameter is unknown or malformed", 401: "gated: log in (upstream's message)",
               403: "gated: the caller's token is not granted access", 404: "not in the catalog (or private)",
               502: "upstream answered oddly while checking access", 504: "upstream is needed and unreachable"}
    return {str(s): json_response(meaning[s], ref("Error")) for s in statuses}


NAME: Schema = {"type": "string", "pattern": NAME_PATTERN, "description": "a repo id's segment, as the Hub accepts it"}
REPO_PARAMS = [
    path_param("org", "the repo's owner (a one-segment repo id is given alone: `/v1/repos/{name}...`)", NAME),
    path_param("name", "the repo's name", NAME),
    query("revision", "a branch, tag, commit or 7+ digit commit prefix the catalog knows (default: the listed one)"),
    query("repo_type", "`model` (default) or `dataset`", {"enum": ["model", "dataset"]}),
]
UPSTREAM_REFUSAL: Schema = {"type": "object", "required": ["error"], "properties": {"error": STRING}}
HUB_TOKEN: list[dict[str, list[str]]] = [{}, {"hubToken": []}]
UPSTREAM_FAILURES = {
    "502": json_response("upstream answered oddly, or bytes failed their check", ref("HubError")),
    "504": json_response("upstream is needed and unreachable (the mirror does not hold the revision)", ref("HubError"))}
REPO_ERRORS = errors(400, 401, 403, 404, 502, 504)


def operation(summary: str, responses: dict[str, Schema], parameters: list[Schema] | None = None,
              description: str | None = None, security: list[dict[str, list[str]]] | None = None) -> Schema:
    op: Schema = {"summary": summary, "responses": responses}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if security is not None:
        op["security"] = security
    return op


PATHS: dict[str, Schema] = {
    "/healthz": {"get": operation("Liveness, and whether each upstream is reachable",
                                  {"200": json_response("the daemon is up", ref("Health"))})},
    "/metrics": {"get": operation("Counters in the Prometheus text format", {"200": {
        "description": "Prometheus text exposition", "content": {"text/plain": {"schema": STRING}}}})},
    "/v1/repos": {"get": operation(
        "Every repo in the catalog the caller may see: its newest revision (the newest complete one if any)",
        {"200": json_response("the repos, ordered by type and id", {"type": "array", "items": ref("Repo")}),
         **errors(400)}, security=HUB_TOKEN)},
    "/v1/repos/{org}/{name}": {"get": operation(
        "One revision in full: parameters, tensors per dtype, GGUF metadata, quants, revisions, usage",
        {"200": json_response("the revision", ref("RepoDetail")), **REPO_ERRORS}, REPO_PARAMS,
        security=HUB_TOKEN)},
    "/v1/repos/{org}/{name}/files": {"get": operation(
        "The files of a revision, stored or not, with what their indexed headers say",
        {"200": json_response("the files, ordered by path", ref("Files")), **REPO_ERRORS}, REPO_PARAMS,
        security=HUB_TOKEN)},
    "/v1/repos/{org}/{name}/tensors": {"get": operation(
        "A page of the tensors of a revision's indexed weights files (by file path, then file order)",
        {"200": json_response("one page; follow `next_offset` until it is null", ref("TensorPage")),
         **REPO_ERRORS},
        [*REPO_PARAMS,
         query("path", "only this weights file (404 EntryNotFound when it is not indexed)"),
         query("offset", "tensors to skip", {"type": "integer", "minimum": 0, "default": 0}),
         query("limit", "tensors per page", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000})],
        security=HUB_TOKEN)},
    "/v1/repos/{org}/{name}/modelfile": {"get": operation(
        "An Ollama Modelfile for a GGUF quant of the repo (pulled into the mirror first)",
        {"200": {"description": "the Modelfile; `FROM` names the GGUF on the daemon's machine",
                 "content": {"text/plain": {"schema": STRING}}},
         "400": json_response("a bad quant, revision or repo type", ref("HubError")),
         "401": json_response("upstream's refusal, as for file downloads (gated, or a repo it does not show)",
                              UPSTREAM_REFUSAL),
         "403": json_response("gated: upstream's refusal, as for file downloads", UPSTREAM_REFUSAL),
         "404": json_response("no such quant, not a GGUF repo, or a repo upstream does not show this caller",
                              {"type": "object", "required": ["error"]}),
         "422": json_response("a GGUF header or Modelfile mreg cannot read or write", ref("HubError")),
         **UPSTREAM_FAILURES},
        [*REPO_PARAMS[:2],
         query("quant", "GGUF quant, any case (`q4_k` = Q4_K_M); default Q4_K_M, else another Q4"),
         query("revision", "branch, tag or commit (default main)",
               {"type": "string", "minLength": 1, "maxLength": MAX_REVISION}),
         REPO_PARAMS[3]],
        description="Errors here are Hub-shaped (`{\"error\": message}` with `X-Error-Code`), as for file downloads.",
        security=HUB_TOKEN)},
    "/v1/search": {"get": operation(
        "`mreg search` over the catalog: every filter must match",
        {"200": json_response("matching repos (newest revision each)", {"type": "array", "items": ref("SearchHit")}),
         **errors(400)},
        [query("text", "substring of the repo id, case-insensitive"),
         query("arch", "substring of the architecture, case-insensitive (e.g. llama)"),
         query("format", "weights format", {"enum": list(FORMATS)}),
         query("quant", "GGUF quant read from the headers, case-insensitive (e.g. Q4_K_M)"),
         query("min_params", "at least this many parameters: 22713728, 500M, 7B"),
         query("max_params", "at most this many parameters")],
        security=HUB_TOKEN)},
}

ADMIN: list[dict[str, list[str]]] = [{}, {"adminToken": []}]
"""None on loopback without a configured token (the default), else the admin token (``JOB_NOTE``)."""
JOB_REPO_PARAMS = [*REPO_PARAMS[:2], REPO_PARAMS[3]]


def hub_errors(*statuses: int) -> dict[str, Schema]:
    meaning = {400: "a malformed body, repo id or setting", 401: "the admin token is needed",
               403: "jobs and pins are disabled: the daemon listens beyond loopback without an admin token",
               404: "no job (or pin) for that repo"}
    return {str(s): json_response(meaning[s], ref("HubError")) for s in statuses}


NOT_JSON = {"415": {"description": "the request does not say `Content-Type: application/json` (a web page's form "
                                  "cannot make the mirror act)", "content": {JSON: {"schema": ref("HubError")}}}}
NO_BODY: Schema = {"required": True, "description": "ignored (`{}` will do), but the request must say JSON "
                                                   "(415 otherwise)", "content": {JSON: {"schema": {}}}}
JOB_NOTE = ("Admin token policy: on loopback without a configured token these are open; with a token every "
            "change needs it, and beyond loopback reading does too; beyond loopback without a token they are shut.")
PATHS.update({
    "/v1/jobs": {
        "get": operation("Every mirror job, ordered by repo", {
            "200": json_response("the jobs", {"type": "array", "items": ref("Job")}), **hub_errors(401, 403)},
            description=JOB_NOTE, security=ADMIN),
        "post": {**operation("Mirror a repo (replacing its job's settings if it has one), due now", {
            "201": json_response("the job", ref("Job")), **hub_errors(400, 401, 403), **NOT_JSON},
            description=JOB_NOTE, security=ADMIN),
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("NewJob")}}}},
    },
    "/v1/jobs/sync": {"post": {**operation("Sync every job now (running ones finish first)", {
        "200": json_response("how many jobs were queued", obj({"queued": INT})), **hub_errors(401, 403), **NOT_JSON},
        description=JOB_NOTE, security=ADMIN), "requestBody": NO_BODY}},
    "/v1/jobs/{org}/{name}": {
        "get": operation("One repo's mirror job", {"200": json_response("the job", ref("Job")),
                                                   **hub_errors(400, 401, 403, 404)},
                         JOB_REPO_PARAMS, JOB_NOTE, ADMIN),
        "delete": operation("Stop mirroring a repo, cancelling a running sync (its files stay)", {
            "200": json_response("what was removed", obj({"removed": STRING})), **hub_errors(400, 401, 403, 404)},
            JOB_REPO_PARAMS, JOB_NOTE, ADMIN),
    },
    "/v1/jobs/{org}/{name}/sync": {"post": {**operation("Sync one repo's job now", {
        "200": json_response("the job", ref("Job")), **hub_errors(400, 401, 403, 404), **NOT_JSON},
        JOB_REPO_PARAMS, JOB_NOTE, ADMIN), "requestBody": NO_BODY}},
})

PIN_REPO = [{**query("repo", "`org/name` (or `name`)", REPO_ID), "required": True},
            query("revision", "a branch, tag, commit or 7+ digit prefix the catalog knows (default: the whole repo)"),
            query("repo_type", "`model` (default) or `dataset`", {"enum": ["model", "dataset"]})]
PIN_NOTE = ("Pinned repos (every revision) and revisions are never evicted by the size budget "
            "(`mreg serve --max-size`). " + JOB_NOTE)
PATHS.update({
    "/v1/pins": {
        "get": operation("Every pin", {
            "200": json_response("the pins", {"type": "array", "items": ref("Pin")}), **hub_errors(401, 403)},
            description=PIN_NOTE, security=ADMIN),
        "post": {**operation("Pin a repo or one revision", {
            "201": json_response("the pin", ref("NewPin")), "200": json_response("already pinned", ref("NewPin")),
            **hub_errors(400, 401, 403), **NOT_JSON}, description=PIN_NOTE, security=ADMIN),
            "requestBody": {"required": True, "content": {JSON: {"schema": obj(
                {"repo": REPO_ID}, {"revision": nullable(STRING), "repo_type": {"enum": ["model", "dataset"]}})}}}},
        "delete": operation("Unpin a repo or one revision", {
            "200": json_response("the pin removed", ref("NewPin")), **hub_errors(400, 401, 403, 404)},
            PIN_REPO, PIN_NOTE, ADMIN),
    },
})

CONVERT_ERRORS = {400: "a malformed body, repo id or quant",
                  401: "upstream's refusal, as for file downloads (a repo it does not show: 401, as the Hub)",
                  403: "gated: the caller's token is not granted access", 404: "no such revision or job"}
PATHS.update({
    "/v1/convert": {"post": {**operation(
        "Convert a repo's safetensors to a GGUF in the mirror's store, as a background job", {
            "200": json_response("the job, already complete", ref("Conversion")),
            "202": json_response("the job, running: poll `GET /v1/convert/{id}`", ref("Conversion")),
            "400": json_response(CONVERT_ERRORS[400], ref("HubError")),
            **{str(s): json_response(CONVERT_ERRORS[s], UPSTREAM_REFUSAL) for s in (401, 403, 404)}, **NOT_JSON,
            **UPSTREAM_FAILURES},
        description="The same repo, commit and quant join one job (a failed one starts again). Access is "
                    "checked as for the repo's files."),
        "requestBody": {"required": True, "content": {JSON: {"schema": ref("NewConversion")}}}}},
    "/v1/convert/{id}": {"get": operation("How a conversion job is going", {
        "200": json_response("the job", ref("Conversion")),
        "404": json_response(CONVERT_ERRORS[404], ref("HubError"))}, [path_param("id", "the job's id")])},
})

DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "mreg mirror",
        "version": __version__,
        "description": (
            "The catalog API of `mreg serve`: what the mirror holds, as JSON. The daemon also speaks the "
            "Hugging Face Hub protocol (point `HF_ENDPOINT` at it); those routes are the Hub's.\n\n"
            "Gated and private repos are listed and described only to callers upstream lets download their "
            "files: send your Hub token as `Authorization: Bearer`. Errors are `{\"error\", \"code\"}`; a "
            "method a path does not list is answered 405 with `Allow` (GET paths take HEAD too)."),
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "hubToken": {"type": "http", "scheme": "bearer",
                         "description": "the caller's Hub token, checked upstream (never stored)"},
            "adminToken": {"type": "http", "scheme": "bearer",
                           "description": "the daemon's admin token (`--admin-token` / `MREG_ADMIN_TOKEN`)"},
        },
    },
}


async def document(request: web.Request) -> web.Response:
    return json_answer(DOCUMENT)
