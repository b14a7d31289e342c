"""Fuzzing the parsers of untrusted input: the safetensors and GGUF header parsers, over random bytes and
over mutations of a corpus of real headers (`tests.fuzz_corpus`: byte flips, planted values in the
length, count and offset fields, truncation, insertions), and the Hub and ModelScope path parsers over
grammar-built and mutated real request paths. Each either gives a result or raises its own error
(FormatError, UsageError: one line), nothing else, whatever the feeding; a header that parses parses the
same in pieces.

Coverage-guided: hypothesis's ``target()`` steers each test toward inputs that run more distinct lines
of the parser (traced with ``sys.settrace`` on the parser's own files only) and, for headers, that get
further into the file; bounded by ``max_examples`` (no deadline: the machine is shared).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from mreg.daemon.hub import paths as hub_paths
from mreg.daemon.modelscope import paths as ms_paths
from mreg.daemon.routes import HUB_ROUTES
from mreg.registry import repo as repo_ids
from mreg.registry.errors import FormatError, UsageError
from mreg.registry.formats import GGUFHeaderParser, HeaderParsed, NeedBytes, SafetensorsHeaderParser
from mreg.registry.formats import events as format_events
from mreg.registry.formats import gguf as gguf_format
from mreg.registry.formats import safetensors as safetensors_format
from mreg.registry.repo import RepoRef, check_revision
from tests.fuzz_corpus import Seed, read_corpus, write_corpus

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
INTERESTING = [0, 1, 7, 255, 2**31, 2**32 - 1, 2**40, 2**60, 2**63, 2**64 - 1]
T = TypeVar("T")
Parser = type[SafetensorsHeaderParser] | type[GGUFHeaderParser]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Seed]]:
    """The corpus, written for this run and read back: seeds by format."""
    folder = tmp_path_factory.mktemp("fuzz-corpus")
    write_corpus(folder)
    seeds = read_corpus(folder)
    by_format = {f: [s for s in seeds if s.format == f] for f in ("gguf", "safetensors")}
    assert {s.name for s in seeds} >= {"minilm", "smollm-prefix", "smollm-short", "every-type"}
    return by_format


# -- coverage guidance ---------------------------------------------------------------------------------

def traced(files: tuple[str, ...], call: Callable[[], T]) -> tuple[T, int]:
    """``call()``, and how many distinct lines of ``files`` it ran (0 when another tracer, such as
    coverage.py or a debugger, is active: it is left alone)."""
    if sys.gettrace() is not None:
        return call(), 0
    lines: set[tuple[str, int]] = set()

    def line(frame: FrameType, event: str, _: Any) -> Any:
        if event == "line":
            lines.add((frame.f_code.co_filename, frame.f_lineno))
        return line

    def scope(frame: FrameType, _event: str, _: Any) -> Any:
        return line if frame.f_code.co_filename in files else None

    sys.settrace(scope)
    try:
        return call(), len(lines)
    finally:
        sys.settrace(None)


HEADER_FILES = (gguf_format.__file__, safetensors_format.__file__, format_events.__file__)
PATH_FILES = (hub_paths.__file__, ms_paths.__file__, repo_ids.__file__)


# -- the header parsers --------------------------------------------------------------------------------

def outcome(make: Parser, data: bytes, size: int | None, step: int | None) -> tuple[HeaderParsed | None, int]:
    """Drive a parser over `data`, `step` bytes at most per answer: (the header, or None on FormatError;
    how far into the file it asked)."""
    parser = make(size)
    reached = 0
    try:
        event = parser.next_event()
        for _ in range(len(data) + 2):
            if not isinstance(event, NeedBytes):
                return event, reached
            assert event.length > 0 and event.offset >= 0
            length = min(event.length, step or event.length)
            reached = max(reached, event.offset)
            parser.receive_data(event.offset, data[event.offset : event.offset + length])
            event = parser.next_event()
    except FormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None, reached
    raise AssertionError("the parser asked for more after the end of the file")


def guided(make: Parser, data: bytes, size: int | None, step: int | None) -> HeaderParsed | None:
    """``outcome``, with its lines run and its progress through ``data`` as hypothesis's targets."""
    (parsed, reached), lines = traced(HEADER_FILES, lambda: outcome(make, data, size, step))
    target(float(lines), label="parser lines run")
    target(reached / max(len(data), 1), label="share of the header reached")
    return parsed


def planted(draw: st.DrawFn, original: int, width: int) -> int:
    """A value for a ``width``-byte field that held ``original``: off by a little, a boundary, or anything."""
    top = 2 ** (8 * width) - 1
    value = draw(st.sampled_from(INTERESTING) | st.integers(-3, 3).map(lambda d: original + d) | st.integers(0, top))
    return value % (top + 1)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Seed]) -> tuple[bytes, int]:
    """A seed's header with 1-4 mutations (mostly one), and its file's size moved by the bytes the mutations
    added or removed: new values in its length, count and offset fields (half of the time a GGUF's tensor
    infos'; in a safetensors header, JSON numbers, its length kept or made to fit), byte flips, planted
    u32/u64s, cuts, insertions. Places come from hypothesis's Random: uniform over the header."""
    seed = draw(st.sampled_from(seeds))
    places = draw(st.randoms(use_true_random=False))
    data = bytearray(seed.data)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 4]))):  # mostly one: each more likelier stops the parse early
        kind = draw(st.sampled_from(["field", "field", "field", "byte", "u64", "u32", "cut", "insert"]))
        at = places.randrange(len(data))
        if kind == "field":
            deep = seed.deep_fields and places.random() < 0.5
            at, width = places.choice(seed.deep_fields if deep else seed.fields)
            if at + width > len(data):
                continue
            if seed.format == "gguf" or at == 0:
                original = int.from_bytes(data[at : at + width], "little")
                data[at : at + width] = planted(draw, original, width).to_bytes(width, "little")
            else:
                text = draw(st.sampled_from(["-1", "1.5", "1e400", str(2**64), str(2**63 - 1), "007"])
                            | st.integers(0, 2**70).map(str))
                data[at : at + width] = text.encode()
                if draw(st.booleans()):
                    data[:8] = struct.pack("<Q", len(data) - 8)
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind in ("u64", "u32"):
            packed = struct.pack("<Q", draw(st.sampled_from(INTERESTING) | st.integers(0, 2**64 - 1)))
            data[at : at + (8 if kind == "u64" else 4)] = packed[: 8 if kind == "u64" else 4]
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data), seed.size + len(data) - len(seed.data)


steps = st.sampled_from([None, None, 1, 7, 200])


@FUZZ
@given(data=st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"GGUF\x03\0\0\0" + b),
       known=st.booleans(), step=steps)
def test_random_bytes_gguf(data: bytes, known: bool, step: int | None) -> None:
    guided(GGUFHeaderParser, data, len(data) if known else None, step)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
       prefix=st.booleans(), known=st.booleans(), step=steps)
def test_random_bytes_safetensors(body: bytes, prefix: bool, known: bool, step: int | None) -> None:
    data = struct.pack("<Q", len(body)) + body if prefix else body
    guided(SafetensorsHeaderParser, data, len(data) if known else None, step)


@FUZZ
@given(data=st.data(), known=st.booleans(), step=st.sampled_from([None, None, 97, 4096]))
def test_mutated_real_gguf_headers(corpus: dict[str, list[Seed]], data: st.DataObject, known: bool,
                                   step: int | None) -> None:
    blob, size = data.draw(mutated(corpus["gguf"]))
    parsed = guided(GGUFHeaderParser, blob, size if known else None, step)
    if parsed is not None:  # compared by repr: a mutated float can be NaN, which never equals itself
        assert repr(outcome(GGUFHeaderParser, blob, size if known else None, None)[0]) == repr(parsed)


@FUZZ
@given(data=st.data(), known=st.booleans(), step=st.sampled_from([None, 97, 4096]))
def test_mutated_real_safetensors_headers(corpus: dict[str, list[Seed]], data: st.DataObject, known: bool,
                                          step: int | None) -> None:
    blob, size = data.draw(mutated(corpus["safetensors"]))
    parsed = guided(SafetensorsHeaderParser, blob, size if known else None, step)
    if parsed is not None:
        assert outcome(SafetensorsHeaderParser, blob, size if known else None, None)[0] == parsed


def test_every_seed_parses_whole_and_in_pieces(corpus: dict[str, list[Seed]]) -> None:
    """The corpus is sound: unmutated, each header parses (SmolLM2's prefix stops short: a FormatError)."""
    for fmt, make in (("gguf", GGUFHeaderParser), ("safetensors", SafetensorsHeaderParser)):
        for seed in corpus[fmt]:
            whole = outcome(make, seed.data, seed.size, None)[0]
            assert (whole is None) == (seed.name == "smollm-prefix"), seed.name
            assert outcome(make, seed.data, None, 977)[0] == whole, seed.name


# -- the path parsers ----------------------------------------------------------------------------------

REAL_PATHS = [
    "/api/models/HuggingFaceTB/SmolLM2-135M-Instruct",
    "/api/models/gpt2/revision/main",
    "/api/datasets/testorg/tiny-dataset/revision/refs%2Fpr%2F1?expand=xetEnabled",
    "/api/models/sentence-transformers/all-MiniLM-L6-v2/tree/main/1_Pooling?recursive=true&expand=false",
    "/api/models/org/name/paths-info/0123456789abcdef0123456789abcdef01234567",
    "/api/models/org/name/refs",
    "/api/whoami-v2",
    "/api/models?search=smol&author=HuggingFaceTB&filter=gguf&sort=downloads&limit=5",
    "/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf",
    "/datasets/testorg/tiny-dataset/resolve/v1.0/data%2Ftest.csv",
    "/gpt2/resolve/refs%2Fconvert%2Fparquet/config.json",
    "/api/v1/models/Qwen/Qwen2-0.5B",
    "/api/v1/models/Qwen/Qwen2-0.5B/revisions",
    "/api/v1/models/Qwen/Qwen2-0.5B/repo/files?Revision=master&Recursive=True",
    "/api/v1/datasets/org/name/repo/tree?Revision=master&Root=data&PageNumber=1&PageSize=100",
    "/api/v1/models/Qwen/Qwen2-0.5B/repo?Revision=master&FilePath=config.json",
    "/api/v1/repos/internalAccelerationInfo",
]
"""Paths the Hub and ModelScope clients send (`docs/hf-hub-protocol.md`, `daemon/modelscope/paths.py`)."""
SEGMENTS = st.sampled_from([
    "api", "v1", "models", "datasets", "spaces", "repos", "resolve", "tree", "revision", "paths-info", "refs",
    "whoami-v2", "repo", "files", "revisions", "internalAccelerationInfo", "main", "refs%2Fpr%2F1", "org",
    "name", "", ".", "..", "%2F", "%2e%2e", "%00", "%ZZ", "%", "%ff", "%C3%A9", "-", "a--b", "a..b", "x" * 97,
    "é", "~1", "@{", "a.lock", "HEAD"]) | st.text(max_size=10)


@st.composite
def request_paths(draw: st.DrawFn) -> str:
    """A path built of Hub and ModelScope words, or a real path with a few characters changed, cut or added."""
    if draw(st.booleans()):
        path = "/" + "/".join(draw(st.lists(SEGMENTS, max_size=8)))
        return path + (draw(st.sampled_from(["", "?", "?a=b&c", "?Revision=%00"])))
    chars = list(draw(st.sampled_from(REAL_PATHS)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(chars)))
        piece = draw(st.sampled_from(["/", "%", "%2F", "..", "?", "", "-", "\x00"]) | st.text(max_size=3))
        if draw(st.booleans()):
            chars[at : at + draw(st.integers(0, 4))] = list(piece)
        else:
            del chars[at:]
    return "".join(chars)


def parse_path(parse: Callable[[str], T | None], path: str) -> T | None:
    """``parse(path)``: the route, or None (no such route) on UsageError, which must be one line."""
    try:
        (parsed, lines) = traced(PATH_FILES, lambda: parse(path))
    except UsageError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    target(float(lines), label="path parser lines run")
    return parsed


@FUZZ
@given(path=request_paths())
def test_hub_paths_parse_or_say_why(path: str) -> None:
    parsed = parse_path(hub_paths.parse_hub_path, path)
    if parsed is not None:
        assert parsed.kind in {kind for kind, _ in HUB_ROUTES}
        if parsed.repo is not None:
            assert RepoRef.parse(parsed.repo.repo_id, parsed.repo.repo_type) == parsed.repo
        if parsed.revision is not None:
            assert check_revision(parsed.revision) == parsed.revision


@FUZZ
@given(path=request_paths())
def test_modelscope_paths_parse_or_say_why(path: str) -> None:
    parsed = parse_path(ms_paths.parse_ms_path, path)
    if parsed is not None and parsed.repo is not None:
        assert RepoRef.parse(parsed.repo.repo_id, parsed.repo.repo_type) == parsed.repo


def test_the_real_paths_parse() -> None:
    for path in REAL_PATHS:
        parser = ms_paths.parse_ms_path if path.startswith(ms_paths.PREFIX) else hub_paths.parse_hub_path
        assert parser(path) is not None, path
