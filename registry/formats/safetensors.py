"""safetensors headers and shard indexes, sans I/O.

Contract of `SafetensorsHeaderParser`: it first asks for the 8-byte little-endian header length N,
then for exactly the rest of the 8 + N header bytes (the driver may hand over more, e.g. one bigger
first read). N is capped at 100 MB like the safetensors library, so a hostile length is an error,
never an allocation. The JSON is validated as the library does: known dtypes, shapes of
non-negative ints, `data_offsets` that hold exactly prod(shape) * itemsize bytes and cover the data
section contiguously from 0 (no gap, no overlap) up to the end of the file when its size is known,
and `__metadata__` of str -> str. Duplicate keys are refused (the library keeps the last one).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mreg.registry.errors import FormatError
from mreg.registry.formats.events import HeaderParsed, NeedBytes, ReceiveBuffer, TensorInfo

MAX_HEADER = 100_000_000
"""The safetensors library's cap on N, the JSON header's length."""
MAX_INDEX = 64 * 1024 * 1024
"""Largest `*.safetensors.index.json` accepted (a 160-shard index is ~10 MB)."""
DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
"""Every dtype safetensors 0.8 knows, with its size in bits."""
USIZE = 2**64
ENTRY = '"":{"dtype":"BF16","shape":[],"data_offsets":[,]},'
"""A header entry without its name, shape and offsets (serde_json writes headers compact)."""
FORMAT_METADATA = '{"__metadata__":{"format":"pt"}}'


class SafetensorsHeaderParser:
    """Parses a safetensors header from the bytes it asks for; `file_size` enables the bounds checks."""

    def __init__(self, file_size: int | None = None) -> None:
        self._file_size = file_size
        self._buf = ReceiveBuffer()
        self._result: HeaderParsed | None = None

    def receive_data(self, offset: int, data: bytes) -> None:
        """Bytes of the file found at `offset`; b"" means the file ends there."""
        if self._result is None:
            self._buf.receive(offset, data)

    def next_event(self) -> NeedBytes | HeaderParsed:
        """What is needed next, or the parsed header; raises FormatError."""
        if self._result is not None:
            return self._result
        if self._buf.end < 8:
            return self._need(8)
        n = int.from_bytes(self._buf.data[:8], "little")
        if n > MAX_HEADER:
            raise FormatError(f"safetensors header length {n} is larger than the {MAX_HEADER}-byte limit")
        if self._file_size is not None and 8 + n > self._file_size:
            raise FormatError(f"safetensors header length {n} runs past the end of the {self._file_size}-byte file")
        if self._buf.end < 8 + n:
            return self._need(8 + n)
        self._result = _parse_header(bytes(self._buf.data[8 : 8 + n]), 8 + n, self._file_size)
        self._buf = ReceiveBuffer()
        return self._result

    def _need(self, upto: int) -> NeedBytes:
        if self._buf.eof:
            raise FormatError(f"safetensors file truncated: it ends at byte {self._buf.end} inside the "
                              f"{upto}-byte header")
        return NeedBytes(self._buf.end, upto - self._buf.end)


def estimate_header_length(names: Collection[str], file_size: int) -> int:
    """The likely header length (8 + JSON) of a safetensors file of `file_size` bytes holding the
    tensors `names` (as a shard index lists them).

    Each entry is its name, a 4-letter dtype, offsets with as many digits as the file size (most
    offsets in [0, size) have them), and a 2-D shape whose dimensions multiply to the mean tensor's
    elements at 2 bytes each (digits(a) + digits(b) is digits(a * b) or one more); plus `{"format":
    "pt"}` metadata. Real shards' headers come within a few percent (tests/test_formats.py).
    """
    if not names:
        return 8 + len(FORMAT_METADATA)
    offsets = 2 * len(str(file_size))
    shape = len(str(max(1, file_size // (2 * len(names))))) + 1
    named = sum(len(json.dumps(name, ensure_ascii=False).encode()) - 2 for name in names)
    return 8 + len(FORMAT_METADATA) + named + len(names) * (len(ENTRY) + offsets + shape)


def _load_json(raw: bytes, what: str) -> Any:
    """Strict JSON: UTF-8, no duplicate keys; any failure (even deep nesting) is a FormatError."""
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            dup = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
            raise ValueError(f"duplicate key {dup[:80]!r}")
        return obj

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise FormatError(f"{what} is not valid JSON ({detail})") from None


def _is_count(value: Any) -> bool:
    """A JSON integer that fits the library's usize."""
    return type(value) is int and 0 <= value < USIZE


def _elements(shape: list[int]) -> int | None:
    """prod(shape), or None when it overflows a usize (as the library's checked multiply does)."""
    n = 1
    for dim in shape:
        n *= dim
        if n >= USIZE:
            return None
    return n


def _tensor(name: str, info: Any) -> tuple[int, int, str, str, tuple[int, ...]]:
    """Validate one header entry; return (begin, end, name, dtype, shape)."""
    what = f"safetensors tensor {name[:80]!r}"
    if not isinstance(info, dict):
        raise FormatError(f"{what} is not a JSON object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise FormatError(f"{what} has an unknown dtype {str(dtype)[:40]!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise FormatError(f"{what} has a bad shape {str(shape)[:80]} (want a list of non-negative ints)")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
            or offsets[0] > offsets[1]):
        raise FormatError(f"{what} has bad data_offsets {str(offsets)[:80]} (want [begin, end], begin <= end)")
    elements = _elements(shape)
    if elements is None:
        raise FormatError(f"{what} has a shape {str(shape)[:80]} with more than 2^64 elements")
    bits = elements * DTYPE_BITS[dtype]
    if bits % 8:
        raise FormatError(f"{what}: {dtype} {shape} is not a whole number of bytes")
    begin, end = offsets
    if end - begin != bits // 8:
        raise FormatError(f"{what}: data_offsets [{begin}, {end}] hold {end - begin} bytes but "
                          f"{dtype} {shape} needs {bits // 8}")
    return begin, end, name, dtype, tuple(shape)


def _parse_header(raw: bytes, header_end: int, file_size: int | None) -> HeaderParsed:
    header = _load_json(raw, "safetensors header")
    if not isinstance(header, dict):
        raise FormatError("safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError("safetensors __metadata__ is not an object of strings")
    entries = sorted(_tensor(name, info) for name, info in header.items())
    covered = 0
    for begin, end, name, _, _ in entries:
        if begin != covered:
            problem = "overlaps the previous tensor" if begin < covered else f"leaves a gap after byte {covered}"
            raise FormatError(f"safetensors tensor {name[:80]!r} at data_offsets [{begin}, {end}] {problem}")
        covered = end
    if file_size is not None and header_end + covered != file_size:
        raise FormatError(f"safetensors data ends at byte {header_end + covered} but the file has "
                          f"{file_size} bytes")
    tensors = tuple(TensorInfo(name, dtype, shape, header_end + begin, end - begin)
                    for begin, end, name, dtype, shape in entries)
    return HeaderParsed("safetensors", header_end, MappingProxyType(metadata), tensors)


@dataclass(frozen=True)
class ShardIndex:
    """A `model.safetensors.index.json`: the announced total size and tensor name -> shard file."""

    total_size: int | None
    weight_map: Mapping[str, str]

    @property
    def shards(self) -> tuple[str, ...]:
        """The shard file names, sorted, each once."""
        return tuple(sorted(set(self.weight_map.values())))


def _plain_file_name(name: Any) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= 255 and name not in (".", "..")
            and not any(c in name for c in "/\\") and name.isprintable())


def parse_index(data: bytes) -> ShardIndex:
    """Parse and validate a shard index: shards must be plain file names beside the index."""
    if len(data) > MAX_INDEX:
        raise FormatError(f"shard index is larger than {MAX_INDEX} bytes")
    index = _load_json(data, "shard index")
    if not isinstance(index, dict):
        raise FormatError("shard index is not a JSON object")
    meta = index.get("metadata") or {}
    weight_map = index.get("weight_map")
    if not isinstance(meta, dict) or not isinstance(weight_map, dict):
        raise FormatError("shard index needs a 'weight_map' object (and 'metadata', if any, an object)")
    total = meta.get("total_size")
    if isinstance(total, float) and total.is_integer():
        total = int(total)
    if total is not None and not _is_count(total):
        raise FormatError(f"shard index total_size {str(total)[:40]} is not a non-negative integer")
    for tensor, shard in weight_map.items():
        if not _plain_file_name(shard):
            raise FormatError(f"shard index maps {tensor[:80]!r} to {str(shard)[:80]!r}, not a plain file name")
    return ShardIndex(total, MappingProxyType(dict(weight_map)))
