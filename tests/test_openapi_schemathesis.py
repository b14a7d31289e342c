"""schemathesis against `/openapi.json` of a real daemon (in process, on a real socket, in front of the test
hub): every documented operation, in every phase (the document's examples, coverage of boundaries and of
undocumented methods, fuzzing of valid and invalid inputs, stateful sequences), with a fixed seed and a
bounded number of examples, finds no server error, no answer outside its schema, no undocumented status or
content type, and a 405 with ``Allow`` for every method a path does not declare."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from huggingface_hub import hf_hub_download
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.engine.run import PhaseName
from schemathesis.schemas import BaseSchema

from tests.daemons import Daemon, running_daemon, wait_for
from tests.ggufs import gguf_bytes
from tests.testhub import TestHub, small_repo

pytestmark = pytest.mark.timeout(240)

SEED = 14
EXAMPLES = 15
"""Examples per operation in the fuzzing phase (and steps' worth in the stateful one): the test's bound."""
CHECKS = ("not_a_server_error", "response_schema_conformance", "status_code_conformance",
          "content_type_conformance", "unsupported_method", "allow_header_conformance")
PHASES = ("examples", "coverage", "fuzzing", "stateful")
REPO, GGUF = "testorg/tiny-gguf", "tiny-Q8_0.gguf"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The mirror in front of the test hub, its catalog holding one GGUF repo a client fetched through it."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    with TestHub() as hub:
        hub.add_repo(small_repo(REPO, {"config.json": '{"model_type": "llama"}\n', GGUF: gguf_bytes("Q8_0")}))
        for running in running_daemon(hub, tmp):
            hf_hub_download(REPO, GGUF, cache_dir=tmp / "client", endpoint=running.url, token=False)
            wait_for(lambda: json.loads(running.get("/v1/search?format=gguf")[2]) != [], 30, "the GGUF indexed")
            yield running


def config(phases: tuple[str, ...] = PHASES, examples: int = EXAMPLES,
           base_url: str | None = None) -> SchemathesisConfig:
    """A bounded, seeded run with ``CHECKS`` only, one worker."""
    return SchemathesisConfig.from_dict({
        "seed": SEED, "workers": 1, "max-failures": 50, **({"base-url": base_url} if base_url else {}),
        "generation": {"max-examples": examples, "database": "none"},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {name: {"enabled": name in phases} for name in PHASES},
    })


@dataclass
class Run:
    """What a schemathesis run found: one line per distinct failure, the operations each phase exercised,
    and those that answered a 2xx at least once."""

    problems: list[str]
    exercised: dict[str, set[str]]
    succeeded: set[str]


def run(schema: BaseSchema) -> Run:
    """Run schemathesis's engine over ``schema`` (the same engine as `schemathesis run`)."""
    found = Run([], {}, set())
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            if event.status != Status.SKIP and event.recorder.interactions:
                found.exercised.setdefault(event.phase.value, set()).add(event.recorder.label)
            if any(i.response is not None and i.response.status_code < 300
                   for i in event.recorder.interactions.values()):
                found.succeeded.add(event.recorder.label)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        found.problems.append(f"{event.recorder.label}: {check.name}: {failure.title}: "
                                              f"{failure.message.splitlines()[0] if failure.message else ''} | "
                                              f"{check.failure_info.code_sample}")
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            found.problems.append(f"engine error: {event!r}"[:500])
        elif isinstance(event, events.EngineFinished):
            assert event.stop_reason == "completed", event.stop_reason
    found.problems = sorted(set(found.problems))
    return found


def operations(document: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}


def with_examples(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the test's repo as the example of every ``{org}/{name}``: the examples and coverage
    phases then reach a repo the catalog holds, and its successful answers, besides generated ids."""
    examples = dict(zip(("org", "name"), REPO.split("/"), strict=True))
    copied = copy.deepcopy(document)
    for item in copied["paths"].values():
        for op in item.values():
            for parameter in op.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in examples:
                    parameter["example"] = examples[parameter["name"]]
    return copied


def test_schemathesis_finds_nothing(daemon: Daemon) -> None:
    document = json.loads(daemon.get("/openapi.json")[2])
    found = run(schemathesis.openapi.from_dict(with_examples(document), config=config(base_url=daemon.url)))
    assert found.problems == []
    assert found.exercised[PhaseName.FUZZING.value] == operations(document)
    assert found.exercised[PhaseName.COVERAGE.value] == operations(document)
    unreachable = {"POST /v1/convert", "GET /v1/convert/{id}",  # the test's repo has no safetensors to convert
                   "GET /v1/jobs/{org}/{name}", "DELETE /v1/jobs/{org}/{name}", "POST /v1/jobs/{org}/{name}/sync"}
    # (a job for a repo of the examples only a stateful sequence makes, and it may not)
    assert found.succeeded >= operations(document) - unreachable


def test_a_schema_that_lies_is_caught(daemon: Daemon) -> None:
    """The same run sees a documented status that is not, and an answer outside its schema."""
    document = json.loads(daemon.get("/openapi.json")[2])
    lying = copy.deepcopy(document)
    del lying["paths"]["/v1/search"]["get"]["responses"]["400"]  # min_params=lots answers 400
    lying["components"]["schemas"]["Health"]["properties"]["status"] = {"const": "fine"}
    schema = schemathesis.openapi.from_dict(lying, config=config(("fuzzing",), 30, daemon.url))
    found = run(schema.include(path_regex="^/(v1/search|healthz)$"))
    assert any(p.startswith("GET /v1/search: status_code_conformance: Undocumented status code")
               for p in found.problems)
    assert any(p.startswith("GET /healthz: response_schema_conformance: ") for p in found.problems)
