"""GGUF v2/v3 headers, sans I/O.

Contract of `GGUFHeaderParser`: its first request is for the 24-byte preamble (the driver decides
how much more to read). It keeps the bytes it receives (dropping what it has parsed) and, when it
runs out, asks for the next window right after them: the largest of what the current item needs,
1 MiB, half of all it has received so far, and the estimated rest of the header plus an eighth.
The estimate adds the rest of the current array, the vocabulary's companion arrays (scores, types,
merges: one element per token) once the token count shows, and the tensor infos. So the total
grows at least 1.5x a request (a 7 MB header takes at most 6 requests, whatever the estimates) and
a header whose bulk is a vocabulary takes two after a 256 KiB first read; at most max(1.5x the
header, header + 1 MiB) is asked for when the estimates hold. Nothing is allocated by an untrusted count: every count and length
is checked against sane caps and against the bytes that can still follow (the file's size when
known, else the 100 MB header limit) before it is used.

Metadata holds every key-value pair in full (arrays as tuples), plus `GGUF.version`,
`GGUF.tensor_count` and `GGUF.kv_count` as gguf.GGUFReader has them, except the arrays named in
`ABRIDGED_KEYS` and any array longer than `MAX_KEPT`: those become a `GGUFArray` holding only the
element type, the count and the first `HEAD` elements; for `tokenizer.ggml.tokens` it also holds
the text of every token id named by a `tokenizer.ggml.*_token_id` key. Strings are decoded as UTF-8
with replacement characters.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from mreg.registry.errors import FormatError
from mreg.registry.formats.events import HeaderParsed, NeedBytes, ReceiveBuffer, TensorInfo

MAGIC = b"GGUF"
MAX_HEADER = 100_000_000
MAX_STRING = 64 * 1024 * 1024
MAX_NAME = 65_535
MAX_ARRAY = 50_000_000
MAX_KEPT = 1 << 20
"""Top-level arrays longer than this are abridged; nested arrays may hold this many elements in all."""
MAX_DEPTH = 8
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
HEAD = 8
MIN_WINDOW = 1024 * 1024
TOKENS = "tokenizer.ggml.tokens"
SCORES, TOKEN_TYPES, MERGES = "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"
ABRIDGED_KEYS = frozenset({TOKENS, SCORES, TOKEN_TYPES, MERGES})
VOCAB_COMPANIONS = ((SCORES, 4), (TOKEN_TYPES, 4), (MERGES, 0))
"""Arrays llama.cpp's converter writes beside the tokens, one element per token, with their element
size (0: a string about one byte longer than the average token, as a merge `a b` of `ab`)."""
SCORED = frozenset({"llama", "t5"})
"""Tokenizer models (`tokenizer.ggml.model`) whose vocabulary has scores; `gpt2` has merges instead."""
TENSOR_INFO = 64
"""Bytes a tensor info probably takes before one is read (`blk.12.ffn_down.weight`, 2 dims: 62)."""
ESTIMATE_MARGIN = 8
"""Estimates are asked for plus one part in this: tokens grow longer with their id, so the mean of
the first ones falls short by a few percent."""
INT64_MAX = 2**63 - 1

STRING, ARRAY = 8, 9
SCALARS = {t: struct.Struct("<" + c) for t, c in zip((0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12), "BbHhIif?Qqd", strict=True)}
VALUE_TYPES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32",
               7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}
MIN_SIZE = {**{t: s.size for t, s in SCALARS.items()}, STRING: 8, ARRAY: 12}
U32, U64 = SCALARS[4], SCALARS[10]

GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2),
    31: ("Q4_0_4_4", 32, 18), 32: ("Q4_0_4_8", 32, 18), 33: ("Q4_0_8_8", 32, 18),  # removed from ggml
    34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    36: ("IQ4_NL_4_4", 32, 18), 37: ("IQ4_NL_4_8", 32, 18), 38: ("IQ4_NL_8_8", 32, 18),  # removed
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}
"""ggml tensor type id -> (name, elements per block, bytes per block)."""

FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_1_SOME_F16", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS",
    24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS",
    31: "IQ1_M", 32: "BF16", 33: "Q4_0_4_4", 34: "Q4_0_4_8", 35: "Q4_0_8_8", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}
"""`general.file_type` (llama_ftype) id -> name."""


@dataclass(frozen=True)
class GGUFArray:
    """An abridged metadata array: element type name, length, first elements, picked elements by index."""

    type: str
    count: int
    head: tuple[Any, ...]
    picked: Mapping[int, Any]


class _Short(Exception):
    """The buffer ends before absolute offset `upto`, which the current item needs."""

    def __init__(self, upto: int) -> None:
        self.upto = upto


@dataclass
class _Array:
    """A top-level array being parsed element by element, across windows."""

    key: str
    etype: int
    count: int
    abridged: bool
    items: list[Any] = field(default_factory=list)
    done: int = 0
    nbytes: int = 0
    texts: bytearray | None = None
    starts: array[int] = field(default_factory=lambda: array("Q"))

    def keep(self, item: Any) -> None:
        if not self.abridged or self.done < HEAD:
            self.items.append(item)

    def value(self) -> Any:
        if not self.abridged:
            return tuple(self.items)
        return GGUFArray(VALUE_TYPES[self.etype], self.count, tuple(self.items), MappingProxyType({}))

    def picked(self, ids: set[int]) -> dict[int, str]:
        """Token texts at `ids` (for tokenizer.ggml.tokens, whose bytes were kept)."""
        texts, starts = self.texts, self.starts
        assert texts is not None
        ends = {i: starts[i + 1] if i + 1 < len(starts) else len(texts) for i in ids}
        return {i: texts[starts[i] : ends[i]].decode("utf-8", "replace") for i in sorted(ids)}


class GGUFHeaderParser:
    """Parses a GGUF header from the windows it asks for; `file_size` tightens the bounds checks."""

    def __init__(self, file_size: int | None = None) -> None:
        self._file_size = file_size
        self._limit = MAX_HEADER if file_size is None else min(file_size, MAX_HEADER)
        self._buf = ReceiveBuffer()
        self._pos = 0
        self._version = self._n_tensors = self._n_kv = -1
        self._kv_done = 0
        self._meta: dict[str, Any] = {}
        self._array: _Array | None = None
        self._tokens: _Array | None = None
        self._nested_left = MAX_KEPT
        self._alignment = DEFAULT_ALIGNMENT
        self._tensors: list[TensorInfo] = []
        self._names: set[str] = set()
        self._info_bytes = 0
        self._result: HeaderParsed | None = None

    def receive_data(self, offset: int, data: bytes) -> None:
        """Bytes of the file found at `offset`; b"" means the file ends there."""
        if self._result is None:
            self._buf.receive(offset, data)

    def next_event(self) -> NeedBytes | HeaderParsed:
        """The next window wanted, or the parsed header; raises FormatError."""
        if self._result is not None:
            return self._result
        try:
            self._run()
        except _Short as short:
            upto = short.upto
        else:
            assert self._result is not None
            return self._result
        return self._need(upto)  # outside the handler: a FormatError must not chain to _Short

    def _need(self, upto: int) -> NeedBytes:
        end = self._buf.end
        if self._file_size is not None and upto > self._file_size:
            raise FormatError(f"GGUF file truncated: the header needs byte {upto} but the file has {self._file_size}")
        if upto > self._limit:
            raise FormatError(f"GGUF header is larger than the {MAX_HEADER}-byte limit")
        if self._buf.eof:
            raise FormatError(f"GGUF file truncated: it ends at byte {end}, inside the header")
        self._buf.discard_before(self._pos)
        floor = MIN_WINDOW if end else 0  # the driver sizes the first read
        estimate = self._estimate()
        want = max(upto - end, end // 2, floor, estimate + estimate // ESTIMATE_MARGIN)
        return NeedBytes(end, min(want, self._limit - end))

    def _estimate(self) -> int:
        """Bytes the rest of the header probably takes, from what is known so far: the rest of the
        current array, the vocabulary's companion arrays not read yet, and the remaining tensor infos."""
        a = self._array
        rest = int((a.count - a.done) * self._per_item(a)) if a is not None else 0
        if self._tokens is not None:
            tokens, model = self._tokens, self._meta.get("tokenizer.ggml.model")
            started = {*self._meta, a.key if a is not None else ""}
            for key, per in VOCAB_COMPANIONS:
                if key not in started and (key != SCORES or model in SCORED) and (key != MERGES or model == "gpt2"):
                    rest += int(tokens.count * (per or self._per_item(tokens) + 1))
        done = len(self._tensors)
        return rest + int((self._n_tensors - done) * (self._info_bytes / done if done else TENSOR_INFO))

    @staticmethod
    def _per_item(a: _Array) -> float:
        """Mean bytes of an array's elements: exact for numbers, measured so far for strings."""
        return MIN_SIZE[a.etype] if a.etype in SCALARS else (a.nbytes / a.done if a.done else 16)

    def _run(self) -> None:
        if self._n_kv < 0:
            self._preamble()
        while self._kv_done < self._n_kv:
            if self._array is not None:
                self._array_items(self._array)
            else:
                self._kv()
        while len(self._tensors) < self._n_tensors:
            self._tensor_info()
        self._finish()

    # -- reading primitives: absolute positions in, (value, next position) out; _Short when short

    def _index(self, pos: int, n: int) -> int:
        i = pos - self._buf.base
        if i + n > len(self._buf.data):
            raise _Short(pos + n)
        return i

    def _scalar(self, st: struct.Struct, pos: int) -> tuple[Any, int]:
        return st.unpack_from(self._buf.data, self._index(pos, st.size))[0], pos + st.size

    def _check(self, pos: int, n: int, per: int, cap: int, what: str) -> None:
        """Refuse a count or length `n` (of `per`-byte items at `pos`) that cannot be real."""
        if n > cap:
            raise FormatError(f"GGUF {what} {n} at offset {pos} is over the limit of {cap}")
        if pos + n * per > self._limit:
            room = "file" if self._limit == self._file_size else f"{MAX_HEADER}-byte header limit"
            raise FormatError(f"GGUF {what} {n} at offset {pos} runs past the end of the {room}")

    def _string(self, pos: int, cap: int, what: str) -> tuple[str, int]:
        n, pos = self._scalar(U64, pos)
        self._check(pos, n, 1, cap, f"{what} length")
        i = self._index(pos, n)
        return self._buf.data[i : i + n].decode("utf-8", "replace"), pos + n

    def _array_header(self, pos: int) -> tuple[int, int, int]:
        etype, pos = self._scalar(U32, pos)
        if etype not in MIN_SIZE:
            raise FormatError(f"GGUF array at offset {pos - 4} has an unknown element type {etype}")
        count, pos = self._scalar(U64, pos)
        self._check(pos, count, MIN_SIZE[etype], MAX_ARRAY, "array length")
        return etype, count, pos

    def _value(self, vtype: int, pos: int, depth: int) -> tuple[Any, int]:
        st = SCALARS.get(vtype)
        if st is not None:
            return self._scalar(st, pos)
        if vtype == STRING:
            return self._string(pos, MAX_STRING, "string")
        if vtype != ARRAY:
            raise FormatError(f"GGUF value at offset {pos} has an unknown type {vtype}")
        if depth >= MAX_DEPTH:
            raise FormatError(f"GGUF arrays nested deeper than {MAX_DEPTH} levels at offset {pos}")
        etype, count, pos = self._array_header(pos)
        if count > self._nested_left:
            raise FormatError(f"GGUF nested arrays hold more than {MAX_KEPT} elements")
        items = []
        for _ in range(count):
            item, pos = self._value(etype, pos, depth + 1)
            items.append(item)
        self._nested_left -= count
        return tuple(items), pos

    # -- the header, item by item; each step commits self._pos only once its item is complete

    def _preamble(self) -> None:
        i = self._index(0, 4)
        magic = bytes(self._buf.data[i : i + 4])
        if magic != MAGIC:
            raise FormatError(f"not a GGUF file (it starts with {magic!r}, not {MAGIC!r})")
        version, pos = self._scalar(U32, 4)
        n_tensors, pos = self._scalar(U64, pos)
        n_kv, pos = self._scalar(U64, pos)
        if version not in (2, 3):
            kind = "big-endian GGUF" if version >> 24 in (2, 3) else f"GGUF version {version}"
            raise FormatError(f"{kind} is not supported (only little-endian versions 2 and 3)")
        if pos + n_kv * 13 + n_tensors * 24 > self._limit:
            room = (f"the {self._file_size}-byte file can hold (truncated or corrupt)" if self._limit == self._file_size
                    else f"fit in the {MAX_HEADER}-byte header limit")
            raise FormatError(f"GGUF header claims {n_tensors} tensors and {n_kv} key-value pairs, more than {room}")
        self._version, self._n_tensors, self._n_kv, self._pos = version, n_tensors, n_kv, pos

    def _kv(self) -> None:
        key, pos = self._string(self._pos, MAX_NAME, "key")
        vtype, pos = self._scalar(U32, pos)
        if key in self._meta:
            raise FormatError(f"GGUF key {key[:80]!r} appears twice")
        if vtype == ARRAY:
            etype, count, pos = self._array_header(pos)
            self._array = _Array(key, etype, count, key in ABRIDGED_KEYS or count > MAX_KEPT)
            if key == TOKENS and etype == STRING:
                self._array.texts = bytearray()
                self._tokens = self._array
        else:
            value, pos = self._value(vtype, pos, 0)
            if key == "general.alignment":
                if vtype != 4 or value == 0 or value & (value - 1):
                    raise FormatError(f"GGUF general.alignment must be a power-of-two uint32, not {value!r}")
                self._alignment = value
            self._meta[key] = value
            self._kv_done += 1
        self._pos = pos

    def _array_items(self, a: _Array) -> None:
        if a.etype == STRING:
            self._strings(a)
        elif a.etype in SCALARS:
            self._numbers(a)
        while a.done < a.count:  # arrays of arrays
            item, pos = self._value(a.etype, self._pos, 1)
            a.keep(item)
            a.nbytes += pos - self._pos
            a.done += 1
            self._pos = pos
        self._meta[a.key] = a.value()
        self._array = None
        self._kv_done += 1

    def _strings(self, a: _Array) -> None:
        """The hot loop: up to hundreds of thousands of tokens, decoded only when kept."""
        data, base, size = self._buf.data, self._buf.base, len(self._buf.data)
        i = self._pos - base
        while a.done < a.count:
            if i + 8 > size:
                self._pos = base + i
                raise _Short(base + i + 8)
            (n,) = U64.unpack_from(data, i)
            self._check(base + i + 8, n, 1, MAX_STRING, "string length")
            if i + 8 + n > size:
                self._pos = base + i
                raise _Short(base + i + 8 + n)
            if not a.abridged or a.done < HEAD:
                a.items.append(data[i + 8 : i + 8 + n].decode("utf-8", "replace"))
            if a.texts is not None:
                a.starts.append(len(a.texts))
                a.texts += data[i + 8 : i + 8 + n]
            i += 8 + n
            a.nbytes += 8 + n
            a.done += 1
        self._pos = base + i

    def _numbers(self, a: _Array) -> None:
        st = SCALARS[a.etype]
        i = self._pos - self._buf.base
        k = min(a.count - a.done, (len(self._buf.data) - i) // st.size)
        keep = k if not a.abridged else max(0, min(k, HEAD - a.done))
        if keep:
            a.items.extend(struct.unpack_from(f"<{keep}{st.format[-1]}", self._buf.data, i))
        a.done += k
        a.nbytes += k * st.size
        self._pos += k * st.size
        if a.done < a.count:
            raise _Short(self._pos + st.size)

    def _tensor_info(self) -> None:
        start = self._pos
        name, pos = self._string(start, MAX_NAME, "tensor name")
        n_dims, pos = self._scalar(U32, pos)
        if n_dims > MAX_DIMS:
            raise FormatError(f"GGUF tensor {name[:80]!r} has {n_dims} dimensions (at most {MAX_DIMS})")
        dims = struct.unpack_from(f"<{n_dims}Q", self._buf.data, self._index(pos, 8 * n_dims))
        gtype, pos = self._scalar(U32, pos + 8 * n_dims)
        offset, pos = self._scalar(U64, pos)
        if gtype not in GGML_TYPES:
            raise FormatError(f"GGUF tensor {name[:80]!r} has an unknown ggml type {gtype}")
        type_name, block, type_size = GGML_TYPES[gtype]
        elements = 1
        for dim in dims:
            elements *= dim
        if elements > INT64_MAX or any(d > INT64_MAX for d in dims):
            raise FormatError(f"GGUF tensor {name[:80]!r} has an impossible shape {list(dims)}")
        if (dims[0] if dims else 1) % block:
            raise FormatError(f"GGUF tensor {name[:80]!r}: row length {dims[0] if dims else 1} is not a "
                              f"multiple of the {type_name} block size {block}")
        if offset % self._alignment:
            raise FormatError(f"GGUF tensor {name[:80]!r}: offset {offset} is not aligned to {self._alignment}")
        if name in self._names:
            raise FormatError(f"GGUF tensor {name[:80]!r} appears twice")
        self._names.add(name)
        self._tensors.append(TensorInfo(name, type_name, tuple(dims), offset, elements // block * type_size))
        self._info_bytes += pos - start
        self._pos = pos

    def _finish(self) -> None:
        data_start = -(-self._pos // self._alignment) * self._alignment
        end = 0
        for t in sorted(self._tensors, key=lambda t: (t.offset, t.nbytes)):
            if t.offset < end:
                raise FormatError(f"GGUF tensor {t.name[:80]!r} at data offset {t.offset} overlaps the "
                                  f"previous tensor, which ends at {end}")
            end = t.offset + t.nbytes
        if self._file_size is not None and self._tensors and data_start + end > self._file_size:
            raise FormatError(f"GGUF tensor data ends at byte {data_start + end} but the file has "
                              f"{self._file_size} bytes")
        meta = {"GGUF.version": self._version, "GGUF.tensor_count": self._n_tensors,
                "GGUF.kv_count": self._n_kv, **self._meta}
        tokens = meta.get(TOKENS)
        if self._tokens is not None and isinstance(tokens, GGUFArray):
            ids = {v for k, v in self._meta.items() if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")
                   and type(v) is int and 0 <= v < tokens.count}
            meta[TOKENS] = replace(tokens, picked=MappingProxyType(self._tokens.picked(ids)))
        tensors = tuple(replace(t, offset=data_start + t.offset) for t in self._tensors)
        self._result = HeaderParsed("gguf", data_start, MappingProxyType(meta), tensors)
        self._buf = ReceiveBuffer()
        self._tokens = self._array = None
