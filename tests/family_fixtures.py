"""Tiny random Gemma 2, Gemma 3 and Phi-3 models built with transformers' own classes, with their
families' tokenizers (a SentencePiece model trained here carrying the family's special tokens) and
chat templates. Hidden 256 and head_dim 64, so rows are multiples of 256 and K-quants are used."""

from __future__ import annotations

import json
from pathlib import Path

from tests import chat_templates
from tests.convert_fixtures import gpt2_tokenizer, train_sentencepiece

SPM_SIZE = 400
_GEMMA_SPECIAL = ("<start_of_turn>", "<end_of_turn>", "<mask>", "[@BOS@]", "<unused0>", "<unused1>", "\u2581\u2581")
_PHI3_ADDED = ("<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|system|>", "<|end|>", "<|user|>")


def _save(model, folder: Path, dtype: str, seed: int) -> None:
    """Give the norms random values (transformers starts them at 0 or 1) and save as ``dtype``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("norm.weight"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.05)
    model.to({"F16": torch.float16, "BF16": torch.bfloat16}[dtype]).save_pretrained(folder)


def _entry(content: str, special: bool) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": special}


def gemma_repo(folder: Path, version: int, *, layers: int = 4, dtype: str = "F16", seed: int = 0) -> Path:
    """Gemma 2 or 3 (text): Gemma's token ids (pad 0, eos 1, bos 2, unk 3), its turn and unused tokens."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    folder.mkdir(parents=True, exist_ok=True)
    train_sentencepiece(folder, SPM_SIZE, ids=(3, 2, 1, 0), user_defined=_GEMMA_SPECIAL)
    shape = dict(vocab_size=SPM_SIZE + 16, hidden_size=256, intermediate_size=768, num_hidden_layers=layers,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
                 sliding_window=64, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    torch.manual_seed(seed)
    if version == 2:
        model = Gemma2ForCausalLM(Gemma2Config(**shape))
    else:
        model = Gemma3ForCausalLM(Gemma3TextConfig(**shape, rope_scaling={"rope_type": "linear", "factor": 8.0}))
    _save(model, folder, dtype, seed)
    ids = {piece: 4 + i for i, piece in enumerate(_GEMMA_SPECIAL)}
    decoder = {str(i): _entry(piece, piece in ("<start_of_turn>", "<end_of_turn>")) for piece, i in ids.items()}
    template = chat_templates.GEMMA if version == 2 else chat_templates.GEMMA3
    config = {"tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
              "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder,
              "chat_template": template.source}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return folder


def phi4_repo(folder: Path, *, layers: int = 2, seed: int = 0) -> Path:
    """Phi-4's shape of Phi3ForCausalLM: no sliding window, a GPT-2 tokenizer (GPT-2's vocabulary here)
    and Phi-4's chat template."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    n_vocab = gpt2_tokenizer(folder, chat_template=chat_templates.PHI4.source)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "GPT2Tokenizer"}))
    torch.manual_seed(seed)
    model = Phi3ForCausalLM(Phi3Config(
        vocab_size=n_vocab, hidden_size=256, intermediate_size=768, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, original_max_position_embeddings=4096,
        sliding_window=None, bos_token_id=n_vocab - 1, eos_token_id=n_vocab - 1, pad_token_id=n_vocab - 1))
    _save(model, folder, "F16", seed)
    return folder


def phi3_repo(folder: Path, *, longrope: bool, layers: int = 4, dtype: str = "F16", seed: int = 0) -> Path:
    """Phi-3 (``longrope``: Phi-3.5's LongRoPE factors and a longer context): Llama's SentencePiece
    ids, Phi-3's chat tokens added after the SentencePiece vocabulary, padding up to vocab_size."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    train_sentencepiece(folder, SPM_SIZE)
    eos = SPM_SIZE  # <|endoftext|>
    extra = {}
    if longrope:
        extra = {"max_position_embeddings": 8192, "rope_scaling": {
            "type": "longrope", "long_factor": [1.0 + 0.25 * i for i in range(32)],
            "short_factor": [1.0 + 0.01 * i for i in range(32)]}}
    torch.manual_seed(seed)
    config = Phi3Config(vocab_size=SPM_SIZE + 112, hidden_size=256, intermediate_size=768, num_hidden_layers=layers,
                        num_attention_heads=4, num_key_value_heads=2, original_max_position_embeddings=2048,
                        **{"max_position_embeddings": 2048, **extra}, sliding_window=2047, bos_token_id=1,
                        eos_token_id=eos, pad_token_id=eos)
    _save(Phi3ForCausalLM(config), folder, dtype, seed)
    decoder = {str(SPM_SIZE + i): _entry(token, token != "<|placeholder1|>") for i, token in enumerate(_PHI3_ADDED)}
    tokenizer = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "<|endoftext|>",
                 "unk_token": "<unk>", "pad_token": "<|endoftext|>", "add_bos_token": False, "add_eos_token": False,
                 "added_tokens_decoder": decoder, "chat_template": chat_templates.PHI3.source}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer, indent=1))
    return folder
