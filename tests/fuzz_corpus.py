"""The fuzzing corpus, generated at test time (no binaries in the repo): real headers cut from the model
files the tests use (MiniLM's safetensors; SmolLM2's GGUF, its first 16 KiB and its whole header with each
array cut to its first elements), and the GGUF and safetensors files the tests write. Each seed is a
header's bytes, the size of its whole file and where its length, count and offset fields are.

`write_corpus(folder)` stores every seed there (``NAME.gguf`` / ``NAME.safetensors``: the header, then
the tensor data as a hole that takes no disk) and `read_corpus(folder)` loads them back.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from mreg.registry.formats import GGUFHeaderParser, HeaderParsed, NeedBytes, SafetensorsHeaderParser
from tests.ggufs import gguf_bytes
from tests.test_formats import MINILM, SMOLLM, write_gguf

SMOLLM_PREFIX = 16 * 1024
"""Bytes of SmolLM2's real header kept as they are: its metadata and first 1,500 tokens (the vocabulary
runs on for 1.7 MB: parsing all of it takes a third of a second, too long for one example)."""
KEPT_ELEMENTS = 64
"""Elements of each top-level array kept in the shortened SmolLM2 header."""
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
INTEGERS = frozenset({0, 1, 2, 3, 4, 5, 10, 11})
STRING, ARRAY = 8, 9
Fields = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Seed:
    """A header to mutate: ``data`` is the start of a ``size``-byte file; ``fields`` are (offset, width)
    of its length, count and offset fields (GGUF: little-endian integers; safetensors: the u64 header
    length and the digits of each number in the JSON); ``deep_fields`` those of a GGUF's tensor infos
    (few beside its metadata's, and reached only when nothing before them breaks)."""

    name: str
    format: str
    data: bytes
    size: int
    fields: Fields
    deep_fields: Fields = ()


def parse_whole(make: type[SafetensorsHeaderParser] | type[GGUFHeaderParser], data: bytes,
                size: int | None) -> HeaderParsed:
    """``data`` (a file's first bytes) parsed in one go; the header must lie within it."""
    parser = make(size)
    while isinstance(event := parser.next_event(), NeedBytes):
        parser.receive_data(event.offset, data[event.offset : event.offset + event.length])
    return event


@dataclass
class GGUFLayout:
    """Where things are in a GGUF header, found by a walk of its own (independent of the parser under test):
    ``integers`` (offset, width) of every count, length, type, dim, offset and integer value; ``arrays``
    (offset of the count, offset after the first ``KEPT_ELEMENTS`` elements or None, end) of each
    top-level array; ``infos`` and ``end`` where the tensor infos start and end (None when the bytes
    stop first)."""

    integers: list[tuple[int, int]]
    arrays: list[tuple[int, int | None, int]]
    infos: int | None = None
    end: int | None = None


def gguf_layout(data: bytes) -> GGUFLayout:
    """The layout of the GGUF header at the start of ``data`` (as far as ``data`` goes)."""
    layout = GGUFLayout([(8, 8), (16, 8)], [])  # the counts (the magic and version are no lengths)

    def integer(pos: int, width: int) -> int:
        if pos + width > len(data):
            raise EOFError
        layout.integers.append((pos, width))
        return int.from_bytes(data[pos : pos + width], "little")

    def value(kind: int, pos: int, top: bool) -> int:
        if kind == STRING:
            return pos + 8 + integer(pos, 8)
        if kind == ARRAY:
            sub, count, item = integer(pos, 4), integer(pos + 4, 8), pos + 12
            cut = None
            for i in range(count):
                cut = item if i == KEPT_ELEMENTS else cut
                item = value(sub, item, False)
            if top:
                layout.arrays.append((pos + 4, cut, item))
            return item
        if kind in INTEGERS:
            integer(pos, SCALAR_SIZES[kind])
        return pos + SCALAR_SIZES[kind]

    try:
        tensors, pos = int.from_bytes(data[8:16], "little"), 24
        for _ in range(int.from_bytes(data[16:24], "little")):
            pos = value(STRING, pos, False)
            pos = value(integer(pos, 4), pos + 4, True)
        layout.infos = pos
        for _ in range(tensors):
            pos = value(STRING, pos, False)
            dims = integer(pos, 4)
            for d in range(dims):
                integer(pos + 4 + 8 * d, 8)
            integer(pos + 4 + 8 * dims, 4)
            integer(pos + 8 + 8 * dims, 8)
            pos += 16 + 8 * dims
        layout.end = pos
    except EOFError:
        pass
    return layout


def shortened(header: bytes) -> bytes:
    """The GGUF ``header`` with each top-level array cut to its first ``KEPT_ELEMENTS`` elements (their
    counts rewritten, every other byte as it was), padded to the default 32-byte alignment."""
    layout = gguf_layout(header)
    assert layout.end is not None
    out, pos = bytearray(), 0
    for count_at, cut, end in layout.arrays:
        if cut is not None:
            out += header[pos:count_at] + KEPT_ELEMENTS.to_bytes(8, "little") + header[count_at + 8 : cut]
            pos = end
    out += header[pos : layout.end]
    return bytes(out + bytes(-len(out) % 32))


def safetensors_fields(header: bytes) -> Fields:
    """The u64 header length, and each run of digits in the JSON (shapes and data_offsets)."""
    return ((0, 8), *((8 + m.start(), m.end() - m.start()) for m in re.finditer(rb"\d+", header[8:])))


def written_safetensors() -> Iterator[tuple[str, bytes]]:
    """Safetensors files the safetensors library writes: every numpy dtype, a scalar, an empty tensor,
    five dimensions, metadata."""
    rng = np.random.default_rng(0)
    yield "dtypes", save({f"t.{dtype}": rng.integers(0, 100, size=(3, 2)).astype(dtype)
                          for dtype in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                        "uint8", "uint16", "uint32", "uint64", "bool")})
    yield "edges", save({"scalar": np.array(1.5, np.float32), "empty": np.zeros((0, 4), np.float32),
                         "wide": np.zeros((1, 1, 1, 1, 7), np.int8)},
                        metadata={"format": "pt", "note": "é \u2603 \"quoted\""})


def written_ggufs(folder: Path) -> Iterator[tuple[str, bytes]]:
    """The GGUFs the tests write: every value type and nested arrays (test_formats), and the hub's
    GGUFs with file types, chat templates and split keys (tests.ggufs)."""
    yield "every-type", write_gguf(folder / "every-type.gguf").read_bytes()
    yield "q4_k_m-template", gguf_bytes("Q4_K_M", "{{ messages }}", license="mit", size_label="1M")
    yield "split-2-of-3", gguf_bytes("Q8_0", split=(2, 3))
    yield "no-file-type", gguf_bytes(None, arch="qwen2")


def sized(path: Path, header: bytes, size: int) -> None:
    """``header`` at ``path``, followed by a hole up to ``size`` bytes."""
    with path.open("wb") as out:
        out.write(header)
        out.truncate(size)


def write_corpus(folder: Path) -> None:
    """Write every seed into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    minilm = MINILM.read_bytes()
    sized(folder / "minilm.safetensors", minilm[: 8 + int.from_bytes(minilm[:8], "little")], len(minilm))
    for name, data in written_safetensors():
        (folder / f"{name}.safetensors").write_bytes(data)
    smollm = SMOLLM.read_bytes()
    header = smollm[: parse_whole(GGUFHeaderParser, smollm, len(smollm)).header_end]
    short = shortened(header)
    sized(folder / "smollm-prefix.gguf", header[:SMOLLM_PREFIX], len(smollm))
    sized(folder / "smollm-short.gguf", short, len(smollm) - len(header) + len(short))
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in written_ggufs(Path(tmp)):
            (folder / f"{name}.gguf").write_bytes(data)


def read_corpus(folder: Path) -> list[Seed]:
    """The seeds in ``folder``: each header up to where it ends (SmolLM2's prefix whole)."""
    seeds = []
    for path in sorted(folder.iterdir()):
        size = path.stat().st_size
        with path.open("rb") as f:
            start = f.read(SMOLLM_PREFIX if path.name == "smollm-prefix.gguf" else 1024 * 1024)
        if path.suffix == ".safetensors":
            data = start[: parse_whole(SafetensorsHeaderParser, start, size).header_end]
            seeds.append(Seed(path.stem, "safetensors", data, size, safetensors_fields(data)))
        else:
            if path.name != "smollm-prefix.gguf":
                start = start[: parse_whole(GGUFHeaderParser, start, size).header_end]
            layout = gguf_layout(start)
            deep = tuple(f for f in layout.integers if layout.infos is not None and f[0] >= layout.infos)
            seeds.append(Seed(path.stem, "gguf", start, size, tuple(layout.integers), deep))
    return seeds
