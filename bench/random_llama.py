"""A random-weight Llama of TinyLlama-1.1B's shape, made by transformers' own classes, for bench/convert_bench.py.

Hidden 2048, FFN 5632, 32 query heads and 4 KV heads of 64, untied embeddings, SmolLM2's 49152-token
vocabulary (tests/convert_fixtures.py writes its tokenizer files); ``layers`` sets the size: 22 layers
are 1.17 B parameters, 2 layers 0.29 B (a quarter, with the same tensor shapes). Weights are
transformers' random initialisation, saved as BF16 safetensors shards of at most 1 GB. The folder is
built once (into a temporary name, renamed when complete) and reused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests import convert_fixtures as fx


def random_llama(cache: Path, layers: int) -> Path:
    """The model folder ``cache/llama-2048x{layers}`` (built on first use)."""
    folder = cache / f"llama-2048x{layers}"
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocab_size, vocab_config = fx.write_vocab(tmp, "smollm")
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=False, **vocab_config)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # initialise in BF16: half the memory of float32
    try:
        model = transformers.LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(tmp, max_shard_size="1GB")
    del model
    tmp.rename(folder)
    return folder


def parameter_count(folder: Path) -> int:
    """Parameters in the folder's safetensors (headers only)."""
    from mreg.registry.convert.source import list_tensors

    total = 0
    for tensor in list_tensors(folder).values():
        count = 1
        for size in tensor.shape:
            count *= size
        total += count
    return total
