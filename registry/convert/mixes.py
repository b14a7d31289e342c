"""Which ggml type each tensor gets for a quant: llama.cpp's per-tensor rules (`llama_tensor_get_type`
in src/llama-quant.cpp) for the quants mreg converts to.

A *mix* names a file type (`general.file_type`) and its default tensor type; the rules then move a
few tensors up: the output (and, with tied embeddings, the token embedding) to Q6_K, `attn_v` and
`ffn_down` of some layers (`use_more_bits`) to Q6_K or Q5_K; the Q2_K and Q3_K mixes also move
`attn_v`, `ffn_down` and `attn_output` up (Q2_K's `attn_v` to Q4_K when four or more query heads
share a KV head). Tensors llama.cpp never quantizes (1-D ones, norms, names not ending in `weight`)
stay F32, and a type whose block does not divide the row length falls back (Q2_K, Q3_K → Q4_0,
Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, then F16).

Mixture-of-experts models: the router (`ffn_gate_inp`) stays F32; the stacked expert tensors
(`ffn_*_exps`) follow the rules of their kind, `ffn_down_exps` taking its layer from its name; with
8 experts (Mixtral 8x7B), attn_k and attn_v become Q8_0 and attn_output Q5_K in the K-quant mixes.

Everything here is pure: it sees tensor names and shapes in ggml order (row length first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T, LlamaFileType as F

from mreg.registry.errors import FormatError, UsageError
from mreg.registry.gguf.quants import normalize_quant


@dataclass(frozen=True)
class Mix:
    """A quant mreg can convert to: its label, llama.cpp file type and default tensor type."""

    label: str
    ftype: F
    default: T


MIXES = {m.label: m for m in (
    Mix("F32", F.ALL_F32, T.F32), Mix("F16", F.MOSTLY_F16, T.F16), Mix("BF16", F.MOSTLY_BF16, T.BF16),
    Mix("Q8_0", F.MOSTLY_Q8_0, T.Q8_0), Mix("Q4_0", F.MOSTLY_Q4_0, T.Q4_0), Mix("Q4_1", F.MOSTLY_Q4_1, T.Q4_1),
    Mix("Q5_0", F.MOSTLY_Q5_0, T.Q5_0), Mix("Q5_1", F.MOSTLY_Q5_1, T.Q5_1), Mix("Q2_K", F.MOSTLY_Q2_K, T.Q2_K),
    Mix("Q3_K_S", F.MOSTLY_Q3_K_S, T.Q3_K), Mix("Q3_K_M", F.MOSTLY_Q3_K_M, T.Q3_K),
    Mix("Q3_K_L", F.MOSTLY_Q3_K_L, T.Q3_K),
    Mix("Q4_K_M", F.MOSTLY_Q4_K_M, T.Q4_K), Mix("Q4_K_S", F.MOSTLY_Q4_K_S, T.Q4_K),
    Mix("Q5_K_M", F.MOSTLY_Q5_K_M, T.Q5_K), Mix("Q5_K_S", F.MOSTLY_Q5_K_S, T.Q5_K),
    Mix("Q6_K", F.MOSTLY_Q6_K, T.Q6_K),
)}
_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
_FLOATS = (T.F32, T.F16, T.BF16)
_FALLBACK = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}
_ATTN_OUTPUT = {F.MOSTLY_Q2_K: T.Q3_K, F.MOSTLY_Q3_K_M: T.Q4_K, F.MOSTLY_Q3_K_L: T.Q5_K}
"""The attention output's type in the mixes that move it up (llama.cpp's rule for models without 8 experts)."""
_LAYER = re.compile(r"blk\.(\d+)\.")


def parse_mix(text: str) -> Mix:
    """The mix for a requested quant (any case; q3_k, q4_k and q5_k mean their _M mixes); UsageError otherwise."""
    label = normalize_quant(text)
    label = _ALIASES.get(label, label)
    if label not in MIXES:
        raise UsageError(f"cannot convert to {text!r}: choose one of {', '.join(m.lower() for m in MIXES)} "
                         f"(q3_k = q3_k_m, q4_k = q4_k_m, q5_k = q5_k_m)")
    return MIXES[label]


def _block(qtype: T) -> int:
    return GGML_QUANT_SIZES[qtype][0]


def quantizable(name: str, shape: Sequence[int]) -> bool:
    """Whether llama.cpp's quantizer changes this tensor's type at all (2-D+ weights, not norms)."""
    return (len(shape) >= 2 and name.endswith("weight") and "_norm.weight" not in name
            and "ffn_gate_inp.weight" not in name)


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for part, category in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"),
                           ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                           ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                           ("ffn_down", "ffn_down")):
        if part in name:
            return category
    return "other"


def _more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _fallback(row: int, qtype: T) -> T:
    if row % _block(qtype) == 0:
        return qtype
    chosen = _FALLBACK.get(qtype, qtype)
    return chosen if row % _block(chosen) == 0 else T.F16


def llama_order(name: str) -> tuple[int, str]:
    """llama.cpp's tensor order (its loader's map): by layer (non-layer tensors first), then by name."""
    match = _LAYER.match(name)
    return (int(match[1]) if match else -1, name)


def tensor_types(tensors: Sequence[tuple[str, Sequence[int]]], mix: Mix, n_layer: int,
                 is_70b: bool = False, n_gqa: int = 1, n_expert: int = 0) -> dict[str, T]:
    """The ggml type of every ``(name, ggml shape)`` tensor for ``mix``, as llama-quantize chooses it
    from an F32 GGUF of the same model (tensors are taken in llama.cpp's order, which the layer
    counters depend on). ``is_70b``: llama.cpp classes the model as 70B (more bits for attn_v);
    ``n_gqa``: query heads per KV head (llama.cpp's ``n_gqa()``, heads // KV heads); ``n_expert``: the
    experts per layer of a mixture-of-experts model (0 for a dense one)."""
    ordered = sorted(tensors, key=lambda t: llama_order(t[0]))
    model = _Model(n_layer, is_70b, n_gqa, n_expert, tied=not any(name == "output.weight" for name, _ in ordered),
                   n_attn_v=sum(1 for name, _ in ordered if _category(name) == "attn_v"))
    counters = {"attn_v": 0, "ffn_down": 0}
    types = {}
    for name, shape in ordered:
        if not quantizable(name, shape):
            types[name] = T.F32
        elif mix.default in _FLOATS:
            types[name] = mix.default
        else:
            types[name] = _fallback(shape[0], _mixed(name, shape, mix, model, counters))
    return types


@dataclass(frozen=True)
class _Model:
    """What llama.cpp's rules know of the model besides the tensor at hand."""

    n_layer: int
    is_70b: bool
    n_gqa: int
    n_expert: int
    tied: bool
    n_attn_v: int


_EIGHT_EXPERTS_ATTN_OUTPUT_Q5_K = (F.MOSTLY_Q2_K, F.MOSTLY_Q3_K_S, F.MOSTLY_Q3_K_M, F.MOSTLY_Q4_K_S, F.MOSTLY_Q4_K_M)
"""The K-quant mixes whose attn_output llama.cpp raises to Q5_K in an 8-expert model (its list also has
IQ mixes, which mreg does not make)."""


def _layer_of(name: str) -> int:
    match = _LAYER.match(name)
    if match is None:
        raise FormatError(f"cannot tell the layer of tensor {name}")
    return int(match[1])


def _mixed(name: str, shape: Sequence[int], mix: Mix, model: _Model, counters: dict[str, int]) -> T:
    """llama.cpp's rule for one quantizable tensor (before the row-length fallback)."""
    category = _category(name)
    qtype = mix.default
    if category == "output" or (model.tied and category == "token_embd"):
        if shape[0] % _block(qtype) != 0:
            return T.Q8_0
        return qtype if qtype == T.Q8_0 else T.Q6_K
    if category == "attn_v":
        i = counters["attn_v"]
        counters["attn_v"] += 1
        if mix.ftype == F.MOSTLY_Q2_K:
            qtype = T.Q4_K if model.n_gqa >= 4 else T.Q3_K
        elif mix.ftype == F.MOSTLY_Q3_K_M:
            qtype = T.Q5_K if i < 2 else T.Q4_K
        elif mix.ftype == F.MOSTLY_Q3_K_L:
            qtype = T.Q5_K
        elif mix.ftype in (F.MOSTLY_Q4_K_M, F.MOSTLY_Q5_K_M) and _more_bits(i, model.n_attn_v):
            qtype = T.Q6_K
        elif mix.ftype == F.MOSTLY_Q4_K_S and i < 4:
            qtype = T.Q5_K
        if model.is_70b and qtype in (T.Q3_K, T.Q4_K):
            qtype = T.Q5_K
        return T.Q8_0 if model.n_expert == 8 else qtype
    if category == "attn_k" and model.n_expert == 8:
        return T.Q8_0
    if category == "attn_output" and model.n_expert == 8:
        return T.Q5_K if mix.ftype in _EIGHT_EXPERTS_ATTN_OUTPUT_Q5_K else qtype
    if category == "ffn_down":
        # llama.cpp counts ffn_down tensors of dense models; an MoE model's layer comes from the name
        i = _layer_of(name) if model.n_expert > 1 else counters["ffn_down"]
        counters["ffn_down"] += 1
        n_layer = model.n_layer
        if mix.ftype == F.MOSTLY_Q2_K:
            return T.Q3_K
        if mix.ftype == F.MOSTLY_Q3_K_M:
            return T.Q5_K if i < n_layer // 16 else T.Q4_K
        if mix.ftype == F.MOSTLY_Q3_K_L:
            return T.Q5_K
        if mix.ftype == F.MOSTLY_Q4_K_M and _more_bits(i, n_layer):
            return T.Q6_K
        if mix.ftype == F.MOSTLY_Q5_K_M and _more_bits(i, n_layer):
            return T.Q6_K
        if mix.ftype == F.MOSTLY_Q4_K_S and i < n_layer // 8:
            return T.Q5_K
        return qtype
    if category == "attn_output":
        return _ATTN_OUTPUT.get(mix.ftype, qtype)
    return qtype
