"""A model folder's tokenizer as GGUF keys, written as llama.cpp's converter writes them.

SentencePiece (`tokenizer.model`) becomes tokenizer model `llama`; a byte-level BPE
`tokenizer.json` becomes `gpt2`, with `tokenizer.ggml.pre` identified as llama.cpp identifies it:
by the sha256 of the token ids its check text encodes to (`PRE_TOKENIZERS`). Special token ids,
add_bos/add_eos, merges and the chat template come from `gguf.SpecialVocab`.
"""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path

import gguf
from gguf import GGUFWriter, TokenType

from mreg.registry.errors import FormatError

CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 "
    "333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you "
    "sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
"""The text llama.cpp's converter encodes to recognise a BPE pre-tokenizer."""

PRE_TOKENIZERS = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "0fe1cf6eda062318a1af7270f3331a85c539a01778ff948e24388e949c5282f4": "gpt-2",
}
"""sha256 of ``str(token ids of CHECK_TEXT)`` → llama.cpp's pre-tokenizer name (from llama.cpp's
`convert_hf_to_gguf_update.py` table, for the tokenizers of the supported models)."""

_LOOKS_SPECIAL = ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
_SPIECE_SPACE = "\u2581"


def looks_special(token: str) -> bool:
    """llama.cpp's guess that an added token not marked special is a control token all the same."""
    return (token in _LOOKS_SPECIAL or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<｜") and token.endswith("｜>"))
            or (token.startswith("<unused") and token.endswith(">")))


def pre_tokenizer_name(token_ids: list[int]) -> str | None:
    """llama.cpp's name for the pre-tokenizer that encodes CHECK_TEXT as ``token_ids``."""
    return PRE_TOKENIZERS.get(sha256(str(token_ids).encode()).hexdigest())


def add_vocab(writer: GGUFWriter, folder: Path, vocab_size: int | None, *, sentencepiece_first: bool) -> None:
    """Add the tokenizer keys of the model in ``folder`` to ``writer``."""
    if sentencepiece_first and (folder / "tokenizer.model").is_file():
        add_sentencepiece(writer, folder, vocab_size)
    elif (folder / "tokenizer.json").is_file():
        add_bpe(writer, folder, vocab_size)
    else:
        raise FormatError(f"{folder.name} has neither tokenizer.json nor tokenizer.model; cannot convert its "
                          f"tokenizer")


def add_bpe(writer: GGUFWriter, folder: Path, vocab_size: int | None) -> None:
    """A byte-level BPE `tokenizer.json` (model `gpt2`; a byte-fallback one as llama.cpp's LlamaHfVocab)."""
    from tokenizers import Tokenizer

    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise FormatError(f"tokenizer.json has a {model.get('type')} model; only byte-level BPE and "
                          f"SentencePiece tokenizers can be converted")
    if model.get("byte_fallback"):
        _add_llama_hf(writer, folder)
        return
    try:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:  # the tokenizers library raises its own Exception type
        raise FormatError(f"cannot load tokenizer.json: {exc}") from None
    pre = pre_tokenizer_name(tokenizer.encode(CHECK_TEXT).ids)
    if pre is None:
        raise FormatError(f"the BPE pre-tokenizer of {folder.name} is not one mreg recognises "
                          f"({', '.join(sorted(set(PRE_TOKENIZERS.values())))})")
    by_id = {i: token for token, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    added = tokenizer.get_added_tokens_decoder()
    size = vocab_size or len(by_id)
    if by_id and max(by_id) >= size:
        raise FormatError(f"tokenizer.json has token id {max(by_id)}, config.json vocab_size is {size}")
    tokens, types = [], []
    for i in range(size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            if added[i].special or looks_special(token):
                types.append(TokenType.CONTROL)
            else:
                token = token.replace(_SPIECE_SPACE, " ")
                types.append(TokenType.USER_DEFINED)
            tokens.append(token)
        else:
            tokens.append(token)
            types.append(TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    _add_special(writer, folder, gguf.SpecialVocab(folder, load_merges=True))


def _add_llama_hf(writer: GGUFWriter, folder: Path) -> None:
    try:
        vocab = gguf.LlamaHfVocab(folder)
    except (TypeError, FileNotFoundError, ValueError) as exc:
        raise FormatError(f"cannot read the tokenizer of {folder.name}: {exc}") from None
    tokens, scores, types = zip(*vocab.all_tokens())
    _add_scored(writer, folder, list(tokens), list(scores), list(types))


def _load_sentencepiece(folder: Path, vocab_size: int | None) -> tuple[list, list[float], list]:
    """The pieces, scores and types of `tokenizer.model`, padded with `[PAD<i>]` to ``vocab_size``."""
    from sentencepiece import SentencePieceProcessor

    processor = SentencePieceProcessor()
    try:
        processor.LoadFromFile(str(folder / "tokenizer.model"))
    except (OSError, RuntimeError) as exc:
        raise FormatError(f"cannot load tokenizer.model: {exc}") from None
    size = vocab_size or processor.vocab_size()
    tokens = [f"[PAD{i}]".encode() for i in range(size)]
    scores = [-10000.0] * size
    types = [int(TokenType.UNUSED)] * size
    for i in range(min(size, processor.vocab_size())):
        tokens[i] = processor.IdToPiece(i).encode()
        scores[i] = processor.GetScore(i)
        types[i] = (TokenType.UNKNOWN if processor.IsUnknown(i) else TokenType.CONTROL if processor.IsControl(i)
                    else TokenType.UNUSED if processor.IsUnused(i) else TokenType.BYTE if processor.IsByte(i)
                    else TokenType.NORMAL)
    extra = folder / "added_tokens.json"
    if extra.is_file():
        for text, i in json.loads(extra.read_text(encoding="utf-8")).items():
            if 0 <= i < size:
                tokens[i], scores[i], types[i] = text.encode(), -1000.0, TokenType.USER_DEFINED
    return tokens, scores, types


def _added_tokens_decoder(folder: Path) -> dict[int, dict]:
    """tokenizer_config.json's `added_tokens_decoder` by token id."""
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return {}
    decoder = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder") or {}
    return {int(key): data for key, data in decoder.items()}


def add_sentencepiece(writer: GGUFWriter, folder: Path, vocab_size: int | None) -> None:
    """A SentencePiece `tokenizer.model` (model `llama`), added tokens typed as llama.cpp types them."""
    tokens, scores, types = _load_sentencepiece(folder, vocab_size)
    for i, data in _added_tokens_decoder(folder).items():
        text = data["content"]
        if not 0 <= i < len(tokens):
            continue
        if data.get("special") or looks_special(text):
            types[i] = TokenType.CONTROL
        else:
            text = text.replace(_SPIECE_SPACE, " ")
            types[i] = TokenType.USER_DEFINED
        tokens[i], scores[i] = text.encode(), -1000.0
    _add_scored(writer, folder, tokens, scores, types)


def add_phi3_sentencepiece(writer: GGUFWriter, folder: Path, vocab_size: int | None) -> None:
    """Phi-3's SentencePiece vocabulary: the added tokens of tokenizer_config.json and then of
    tokenizer.json are user-defined, or control when marked special (no guessing, text unchanged)."""
    tokens, scores, types = _load_sentencepiece(folder, vocab_size)
    added = list(_added_tokens_decoder(folder).items())
    if (folder / "tokenizer.json").is_file():
        spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        added += [(int(data["id"]), data) for data in spec.get("added_tokens") or []]
    for i, data in added:
        if not 0 <= i < len(tokens):
            raise FormatError(f"added token {data['content']!r} has id {i}, beyond the vocabulary of {len(tokens)}")
        tokens[i], scores[i] = data["content"].encode(), -1000.0
        types[i] = TokenType.CONTROL if data.get("special") else TokenType.USER_DEFINED
    _add_scored(writer, folder, tokens, scores, types)


def _add_scored(writer: GGUFWriter, folder: Path, tokens: list, scores: list[float], types: list) -> None:
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    _add_special(writer, folder, gguf.SpecialVocab(folder, n_vocab=len(tokens)))


def _add_special(writer: GGUFWriter, folder: Path, special: gguf.SpecialVocab) -> None:
    """The special token ids, merges and chat template, with add_bos/add_eos as llama.cpp decides them
    now: what the tokenizer.json post-processor says wins over tokenizer_config.json."""
    special.add_special_token.update(post_processor_flags(folder))
    special.add_to_gguf(writer, quiet=True)


def post_processor_flags(folder: Path) -> dict[str, bool]:
    """add_bos/add_eos as the tokenizer.json post-processor implies them (llama.cpp's rule): a
    byte-level one adds neither; a template one adds the special token opening its single-sequence
    template as BOS (unless tokenizer_config.json names other BOS and CLS tokens), and one closing it
    as EOS."""
    path, config_path = folder / "tokenizer.json", folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    post = json.loads(path.read_text(encoding="utf-8")).get("post_processor") or {}
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    bos, cls = _token_text(config.get("bos_token")), _token_text(config.get("cls_token"))
    flags: dict[str, bool] = {}
    for processor in post.get("processors", [post]):
        kind = processor.get("type")
        if kind == "ByteLevel":
            flags.setdefault("bos", False)
            flags.setdefault("eos", False)
        elif kind == "TemplateProcessing" and len(single := processor.get("single") or []) > 1:
            if first := single[0].get("SpecialToken", {}).get("id"):
                flags["bos"] = first in (bos, cls) or not bos or not cls
            if single[-1].get("SpecialToken", {}).get("id"):
                flags["eos"] = True
    return flags


def _token_text(entry: object) -> str | None:
    """A tokenizer_config.json token entry's text (a string, or an object with `content`)."""
    if isinstance(entry, dict):
        entry = entry.get("content")
    return entry if isinstance(entry, str) else None
