"""The conversion plan of a model folder: every GGUF key and every tensor with its source, shape and
ggml type, known before a byte of weights is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from mreg.registry import __version__
from mreg.registry.convert.architectures import (
    Architecture,
    add_hparams,
    config_value,
    architecture_of,
    gguf_name,
    is_70b,
    llama3_rope_factors,
    qk_heads,
    qk_row_order,
    query_heads_per_kv_head,
)
from mreg.registry.convert.experts import check_experts, expert_count
from mreg.registry.convert.metadata import add_general, parameter_counts
from mreg.registry.convert.mixes import Mix, llama_order, tensor_types
from mreg.registry.convert.source import SourceTensor, list_tensors, read_json
from mreg.registry.convert.vocab import add_vocab
from mreg.registry.errors import FormatError


@dataclass(frozen=True)
class PlannedTensor:
    """One GGUF tensor: where its values come from and how it is stored."""

    name: str
    shape: tuple[int, ...]
    """In numpy order (the row length last)."""
    qtype: GGMLQuantizationType
    source: SourceTensor | None
    row_order: np.ndarray | None = None
    """Source row of each row (Q/K permutation), None for the source order."""
    values: np.ndarray | None = None
    """The float32 values of a tensor the converter makes (`rope_freqs`), else None."""
    shift: float = 0.0
    """Added to every value, in the source's float type (Gemma's norms)."""
    experts: tuple[SourceTensor, ...] = ()
    """The per-expert sources stacked, in expert order, into this 3-D tensor (source is then None)."""

    @property
    def rows(self) -> int:
        return int(np.prod(self.shape[:-1], dtype=np.int64)) if len(self.shape) > 1 else 1

    @property
    def row_bytes(self) -> int:
        block, size = gguf.GGML_QUANT_SIZES[self.qtype]
        return self.shape[-1] // block * size

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_bytes


@dataclass
class Plan:
    """The keys (held by a GGUFWriter not yet writing) and the tensors in file order."""

    architecture: str
    mix: Mix
    writer: GGUFWriter
    tensors: list[PlannedTensor]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def plan_conversion(folder: Path, mix: Mix, name: str, repo_url: str | None = None) -> Plan:
    """Plan converting the model in ``folder`` (named ``name``: its repo's name) to ``mix``;
    FormatError if it cannot be converted."""
    config = read_json(folder / "config.json")
    hf_arch, spec = architecture_of(config)
    tensors = _tensors(folder, config, spec, mix)
    writer = GGUFWriter(None, spec.name)
    writer.add_type(gguf.GGUFType.MODEL)
    add_general(writer, folder, name, parameter_counts((t.name, t.shape) for t in tensors))
    if repo_url is not None:
        writer.add_source_repo_url(repo_url)
    writer.add_quantized_by(f"mreg {__version__}")
    if spec.family is not None:
        spec.family.add_hparams(writer, config)
    else:
        add_hparams(writer, config, spec)
    writer.add_file_type(mix.ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if spec.family is not None:
        spec.family.add_vocab(writer, folder, config)
    else:
        add_vocab(writer, folder, config.get("vocab_size"), sentencepiece_first=spec.sentencepiece_first)
    if spec.arch == gguf.MODEL_ARCH.LLAMA and config.get("vocab_size") == 49152:
        _replace(writer, gguf.Keys.Tokenizer.ADD_BOS, False, gguf.GGUFValueType.BOOL)
    return Plan(hf_arch, mix, writer, tensors)


def _replace(writer: GGUFWriter, key: str, value: Any, vtype: gguf.GGUFValueType) -> None:
    """Set ``key``, dropping a value set before (llama.cpp's converter overrides add_bos this way for
    the 49152-token Granite/SmolLM vocabulary)."""
    for kv in writer.kv_data:
        kv.pop(key, None)
    writer.add_key_value(key, value, vtype)


def _tensors(folder: Path, config: Mapping[str, Any], spec: Architecture, mix: Mix) -> list[PlannedTensor]:
    n_layer = config_value(config, "num_hidden_layers")
    names = gguf.get_tensor_name_map(spec.arch, n_layer)
    family = spec.family
    found: dict[str, PlannedTensor] = {}
    stacks: dict[str, dict[int, SourceTensor]] = {}
    for hf_name, source in list_tensors(folder).items():
        if family is not None and family.skips(hf_name):
            continue
        if spec.experts is not None and (stacked := spec.experts.stacked_name(hf_name)) is not None:
            stacks.setdefault(stacked[0], {})[stacked[1]] = source
            continue
        name = gguf_name(hf_name, names)
        if name is None:
            continue
        heads = qk_heads(hf_name, config, spec)
        order = qk_row_order(source.shape[0], heads) if heads is not None else None
        found[name] = PlannedTensor(name, source.shape, _UNSET, source, row_order=order)
    for name, experts in stacks.items():
        found[name] = _stacked(name, [experts[e] for e in check_experts(name, experts, config)])
    if (factors := llama3_rope_factors(config)) is not None:
        name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
        found[name] = PlannedTensor(name, factors.shape, _UNSET, None, values=factors)
    if family is not None:
        found |= {name: PlannedTensor(name, values.shape, _UNSET, None, values=values)
                  for name, values in family.extra_tensors(config).items()}
    types = tensor_types([(name, tuple(reversed(t.shape))) for name, t in found.items()], mix, n_layer,
                         is_70b(config, spec), query_heads_per_kv_head(config), expert_count(config))
    return [replace(found[name], qtype=types[name], shift=family.norm_shift(name) if family is not None else 0.0)
            for name in sorted(found, key=llama_order)]


_UNSET = GGMLQuantizationType.F32
"""The type of a tensor before the quant rules have seen them all."""


def _stacked(name: str, experts: list[SourceTensor]) -> PlannedTensor:
    """The 3-D tensor of a layer's experts of one kind; FormatError when their shapes differ."""
    shapes = {e.shape for e in experts}
    if len(shapes) != 1:
        raise FormatError(f"{name}: the experts' tensors have different shapes {sorted(shapes)}")
    return PlannedTensor(name, (len(experts), *experts[0].shape), _UNSET, None, experts=tuple(experts))
