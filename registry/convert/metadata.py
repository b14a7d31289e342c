"""The `general.*` keys as llama.cpp's converter derives them: name, basename, finetune, version and
size label from the model's name (and model card, when the folder has one), the parameter count,
and sampling defaults from generation_config.json."""

from __future__ import annotations

from collections.abc import Iterable
from math import prod
from pathlib import Path

import gguf
from gguf import GGUFWriter

from mreg.registry.convert.source import read_json

_SAMPLING = {  # generation_config.json key(s), first found wins -> GGUFWriter method
    ("sequence",): "add_sampling_sequence", ("top_k",): "add_sampling_top_k", ("top_p",): "add_sampling_top_p",
    ("min_p",): "add_sampling_min_p", ("xtc_probability",): "add_sampling_xtc_probability",
    ("xtc_threshold",): "add_sampling_xtc_threshold", ("temperature",): "add_sampling_temp",
    ("penalty_last_n",): "add_sampling_penalty_last_n",
    ("penalty_repeat", "repetition_penalty"): "add_sampling_penalty_repeat",
    ("mirostat",): "add_sampling_mirostat", ("mirostat_tau",): "add_sampling_mirostat_tau",
    ("mirostat_eta",): "add_sampling_mirostat_eta",
}


def parameter_counts(shapes: Iterable[tuple[str, tuple[int, ...]]]) -> tuple[int, int, int, int]:
    """(total, shared, per-expert, expert count) parameters of tensors given as (GGUF name, numpy
    shape), counted as llama.cpp counts them for its size label."""
    total = shared = expert = expert_sum = n_expert_tensors = 0
    for name, shape in shapes:
        size = prod(shape)
        total += size
        if "_exps." in name and len(shape) >= 3:
            count = shape[-2 if ".bias" in name else -3]
            expert += size // count
            expert_sum += count
            n_expert_tensors += 1
        else:
            shared += size
    return total, shared, expert, expert_sum // n_expert_tensors if n_expert_tensors else 0


def add_general(writer: GGUFWriter, folder: Path, model_name: str, counts: tuple[int, int, int, int]) -> None:
    """The `general.*` keys of the model in ``folder``, named ``model_name`` (its repo's name), with
    the ``parameter_counts`` of its tensors."""
    card = gguf.Metadata.load_model_card(folder)
    config = gguf.Metadata.load_hf_parameters(folder)
    meta = gguf.Metadata.apply_metadata_heuristic(gguf.Metadata(), card, config, Path(model_name), counts[0])
    meta.name = meta.name or model_name
    if meta.size_label is None and counts[0] > 0:
        meta.size_label = gguf.size_label(*counts)
    meta.set_gguf_meta_model(writer)
    generation = folder / "generation_config.json"
    settings = read_json(generation) if generation.is_file() else {}
    for keys, method in _SAMPLING.items():
        value = next((settings[k] for k in keys if settings.get(k) is not None), None)
        if value is not None:
            getattr(writer, method)(value)
