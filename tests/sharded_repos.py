"""Generated model repos for header-reading budgets (tests and bench/inspect_bench.py): sharded
safetensors checkpoints with a Llama checkpoint's tensor names, count and order, and GGUFs whose
header is mostly a vocabulary."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFWriter
from safetensors.numpy import save_file

INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class Layout:
    """A Llama-like checkpoint: the real model's tensor names and count, its dimensions scaled down."""

    name: str
    layers: int
    shards: int
    hidden: int = 128
    kv_dim: int = 32
    intermediate: int = 384
    vocab: int = 1024

    @property
    def repo_id(self) -> str:
        return f"bench/{self.name}"

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) in the order `save_pretrained` writes a Llama state dict."""
        h, kv, ff = self.hidden, self.kv_dim, self.intermediate
        layer = [("self_attn.q_proj.weight", (h, h)), ("self_attn.k_proj.weight", (kv, h)),
                 ("self_attn.v_proj.weight", (kv, h)), ("self_attn.o_proj.weight", (h, h)),
                 ("mlp.gate_proj.weight", (ff, h)), ("mlp.up_proj.weight", (ff, h)),
                 ("mlp.down_proj.weight", (h, ff)), ("input_layernorm.weight", (h,)),
                 ("post_attention_layernorm.weight", (h,))]
        return ([("model.embed_tokens.weight", (self.vocab, h))]
                + [(f"model.layers.{i}.{name}", shape) for i in range(self.layers) for name, shape in layer]
                + [("model.norm.weight", (h,)), ("lm_head.weight", (self.vocab, h))])

    def shard_names(self) -> list[str]:
        return [f"model-{i + 1:05d}-of-{self.shards:05d}.safetensors" for i in range(self.shards)]

    def weight_map(self) -> dict[str, str]:
        """Tensor name -> shard, tensors in order by the bytes before them, as `save_pretrained` fills
        shards of a maximum size."""
        tensors = self.tensors()
        sizes = [2 * math.prod(shape) for _, shape in tensors]
        total, names = sum(sizes), self.shard_names()
        before = np.cumsum([0, *sizes[:-1]])
        return {name: names[min(self.shards - 1, int(b) * self.shards // total)]
                for (name, _), b in zip(tensors, before, strict=True)}


def write_checkpoint(layout: Layout, folder: Path, with_index: bool = True) -> dict[str, Path | bytes]:
    """The repo's files: shards written by `save_file` (reused when already there), config.json and,
    if asked, the shard index."""
    tensors, weight_map = layout.tensors(), layout.weight_map()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "layout.json"
    if not stamp.exists() or json.loads(stamp.read_text()) != asdict(layout):
        for shard in layout.shard_names():
            save_file({name: np.zeros(shape, np.float16) for name, shape in tensors if weight_map[name] == shard},
                      folder / shard, metadata={"format": "pt"})
        stamp.write_text(json.dumps(asdict(layout)))
    files: dict[str, Path | bytes] = {shard: folder / shard for shard in layout.shard_names()}
    total = sum(2 * math.prod(shape) for _, shape in tensors)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": layout.hidden,
              "num_hidden_layers": layout.layers, "intermediate_size": layout.intermediate, "vocab_size": layout.vocab}
    files["config.json"] = json.dumps(config, indent=2).encode()
    if with_index:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        files[INDEX] = json.dumps(index, indent=2).encode()
    return files


def write_vocab_gguf(path: Path, vocab: int, tokenizer: str = "llama", layers: int = 24) -> Path:
    """A GGUF whose header is mostly a `vocab`-token vocabulary, as llama.cpp's converter writes it:
    tokens, scores and types for a SentencePiece (`llama`) tokenizer, types and merges for BPE
    (`gpt2`); then a chat template and the tensor infos of `layers` layers (reused when there)."""
    if path.exists():
        return path
    partial = path.with_name(path.name + ".partial")
    rng = np.random.default_rng(vocab)
    w = GGUFWriter(partial, "llama")
    w.add_context_length(131_072)
    w.add_block_count(layers)
    w.add_tokenizer_model(tokenizer)
    lengths = rng.integers(1, 10, vocab)
    w.add_token_list([f"{i:x}_" + "x" * int(n) for i, n in enumerate(lengths)])
    if tokenizer == "llama":
        w.add_token_scores([0.0] * vocab)
    w.add_token_types([1] * vocab)
    if tokenizer == "gpt2":
        w.add_token_merges([f"{i:x} " + "y" * int(n) for i, n in enumerate(lengths[: vocab - 256])])
    w.add_bos_token_id(2)
    w.add_eos_token_id(vocab - 1)
    w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    w.add_tensor("token_embd.weight", np.zeros((vocab, 16), np.float16))
    for i in range(layers):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            w.add_tensor(f"blk.{i}.{name}.weight", np.zeros((4, 32), np.float16))
        for name in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{i}.{name}.weight", np.ones(32, np.float32))
    w.add_tensor("output_norm.weight", np.ones(16, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    partial.replace(path)
    return path
