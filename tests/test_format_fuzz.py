"""Fuzzing the header parsers: random bytes and mutated real headers either parse or raise
FormatError, nothing else, whatever the feeding; a header that parses parses the same in pieces."""

from __future__ import annotations

import functools
import json
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mreg.registry.errors import FormatError
from mreg.registry.formats import GGUFHeaderParser, HeaderParsed, NeedBytes, SafetensorsHeaderParser
from tests.test_formats import MINILM, write_gguf

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
INTERESTING = [0, 1, 7, 255, 2**31, 2**32 - 1, 2**40, 2**60, 2**63, 2**64 - 1]


@functools.cache
def small_gguf() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_gguf(Path(tmp) / "seed.gguf").read_bytes()


@functools.cache
def minilm_header() -> bytes:
    data = MINILM.read_bytes()
    return data[: 8 + struct.unpack("<Q", data[:8])[0]]


def outcome(make: type[SafetensorsHeaderParser] | type[GGUFHeaderParser], data: bytes, size: int | None,
            step: int | None) -> HeaderParsed | None:
    """Drive a parser over `data`, `step` bytes at most per answer: the header, or None on FormatError."""
    parser = make(size)
    try:
        event = parser.next_event()
        for _ in range(len(data) + 2):
            if not isinstance(event, NeedBytes):
                return event
            assert event.length > 0 and event.offset >= 0
            length = min(event.length, step or event.length)
            parser.receive_data(event.offset, data[event.offset : event.offset + length])
            event = parser.next_event()
    except FormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    raise AssertionError("the parser asked for more after the end of the file")


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """`seed` with a few byte flips, planted u64s (lengths and counts), cuts and insertions."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["byte", "u64", "u32", "cut", "insert"]))
        if kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind in ("u64", "u32"):
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, 2**64 - 1))
            packed = struct.pack("<Q", value)[: 8 if kind == "u64" else 4]
            data[at : at + len(packed)] = packed
        elif kind == "cut":
            del data[at:]
            if not data:
                break
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


steps = st.sampled_from([None, None, 1, 7, 200])


@FUZZ
@given(data=st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"GGUF\x03\0\0\0" + b),
       known=st.booleans(), step=steps)
def test_random_bytes_gguf(data: bytes, known: bool, step: int | None) -> None:
    outcome(GGUFHeaderParser, data, len(data) if known else None, step)


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
    outcome(SafetensorsHeaderParser, data, len(data) if known else None, step)


@FUZZ
@given(data=st.data(), known=st.booleans(), step=steps)
def test_mutated_gguf(data: st.DataObject, known: bool, step: int | None) -> None:
    blob = data.draw(mutated(small_gguf()))
    parsed = outcome(GGUFHeaderParser, blob, len(blob) if known else None, step)
    if parsed is not None:  # compared by repr: a mutated float can be NaN, which never equals itself
        assert repr(outcome(GGUFHeaderParser, blob, len(blob) if known else None, None)) == repr(parsed)


@FUZZ
@given(data=st.data(), known=st.booleans(), step=st.sampled_from([None, 7, 1000]))
def test_mutated_safetensors(data: st.DataObject, known: bool, step: int | None) -> None:
    blob = data.draw(mutated(minilm_header()))
    size = len(blob) + 90_856_960 if known else None  # MiniLM's tensor data follows its header
    parsed = outcome(SafetensorsHeaderParser, blob, size, step)
    if parsed is not None:
        assert outcome(SafetensorsHeaderParser, blob, size, None) == parsed
